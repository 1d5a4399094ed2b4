"""House rules the code keeps as it grows: imports point down the layers, functions stay short,
the code is lint-clean, and nothing cites a work-log label that means nothing to a reader."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flashsim"
MAX_FUNCTION_LINES = 80

# A label from a work log ("<stop> 10", "<issue> 5", "<run> D"): meaningless outside that log.
# Built from pieces so this file's own source does not match it. Reading I/O and the like is
# ordinary English, hence the letter must not be followed by a slash or another letter.
_STOP = r"(?<![\w-])[Ss]" + r"top [0-9]+\b"
_ISSUE = r"(?<![\w-])[Ii]" + r"ssue #?[0-9]+\b"
_RUN = r"(?<![\w-])[Rr]" + r"uns? [A-Z](?![\w/])"
WORK_LOG_LABEL = re.compile("|".join((_STOP, _ISSUE, _RUN)))


def _python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _tool(name: str) -> str:
    """The console script installed next to this interpreter (the venv's), else the PATH's."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def _run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept() -> None:
    # the contracts live in pyproject.toml [tool.importlinter]
    result = _run_tool(_tool("lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_is_clean() -> None:
    result = _run_tool(_tool("ruff"), "check", "--no-cache", "flashsim", "tests")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _is_numba_kernel(node: ast.FunctionDef | ast.AsyncFunctionDef, source: str) -> bool:
    """njit/jit-decorated, or its text says it is a numba kernel (which must stay one piece)."""
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("njit", "jit"):
            return True
    text = ast.get_source_segment(source, node) or ""
    return "numba kernel" in text.lower()


def _long_functions(path: Path, root: Path = ROOT) -> list[str]:
    """'file:line name (n lines)' for each function over the limit that is not a numba kernel."""
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        n_lines = node.end_lineno - node.lineno + 1
        if n_lines > MAX_FUNCTION_LINES and not _is_numba_kernel(node, source):
            found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n_lines} lines)")
    return found


def test_no_function_is_over_80_lines() -> None:
    long = [f for path in _python_files(PACKAGE) for f in _long_functions(path)]
    assert not long, "split these (numba kernels excepted):\n" + "\n".join(long)


def test_length_check_sees_long_functions_and_spares_kernels(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "mod.py").write_text(
        f"def long():\n{body}\n\n@njit(cache=True)\ndef kernel():\n{body}\n\n"
        f"def short():\n    return 1\n")
    found = _long_functions(tmp_path / "mod.py", root=tmp_path)
    assert [f.split()[1] for f in found] == ["long"]


def test_no_work_log_labels_in_code_or_tests() -> None:
    hits = []
    for path in _python_files(PACKAGE, ROOT / "tests"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = WORK_LOG_LABEL.search(line)
            if m:
                hits.append(f"{path.relative_to(ROOT)}:{n}: {m.group(0)!r}  {line.strip()[:90]}")
    assert not hits, "say what was measured instead of citing the log:\n" + "\n".join(hits)


# each label is split mid-word so that this file passes its own check
@pytest.mark.parametrize("text", [
    "measured (st" + "op 10)", "Iss" + "ue #5", "validation r" + "un D of the experiments",
    "ru" + "ns S-V", "Ru" + "n F showed",
])
def test_label_pattern_catches_labels(text: str) -> None:
    assert WORK_LOG_LABEL.search(text)


@pytest.mark.parametrize("text", [
    "r" + "un I/O-bound", "reads r" + "un A/B tests", "the run st" + "ops 10 us later",
    "non-st" + "op 4 KiB reads",
    "runs at QD 8", "an issue with 4 KiB reads", "Run a sweep",
])
def test_label_pattern_spares_ordinary_english(text: str) -> None:
    assert not WORK_LOG_LABEL.search(text)


def test_no_test_runs_a_file_from_experiments() -> None:
    # what a test needs lives in flashsim/, so the experiments stay free to change
    loaders = re.compile(r"spec_from_file_location|runpy\.|exec\(|experiments/\w+/\w+\.py")
    this = Path(__file__).resolve()
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for p in _python_files(ROOT / "tests") if p != this
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if loaders.search(line)]
    assert not hits, "\n".join(hits)
