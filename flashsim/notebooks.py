"""`flashsim notebooks`: run the notebooks and keep them with their outputs in a results folder.

Each notebook runs top to bottom in a fresh Jupyter kernel of this very interpreter (a
kernelspec for `sys.executable` in a temporary Jupyter path: the `python3` kernel a venv
ships starts whatever `python` is first on PATH), in the notebook's own folder, and is
written with its tables and figures to `--out`, so a reader can open it without running
anything. The notebooks read committed study results only: no disk runs, no long jobs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cliargs
from .atomic import atomic_write_text
from .cliutil import add_json_flag, emit
from .errors import InputError
from .progress import progress

SOURCE = Path("notebooks")
DEFAULT_OUT = Path("results") / "notebooks"
KERNEL_NAME = "flashsim-this-python"
PLAIN_KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
NEEDS = ("nbformat", "nbclient", "ipykernel")
# the kernel's own log (its warning that a local TCP socket is not encrypted) is noise here;
# a cell's errors come back in the notebook, a dead kernel as an error
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]


@dataclass
class Rendered:
    """What a render wrote (paths) and which notebooks failed (name and error line)."""

    out_dir: Path
    written: list[Path] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out_dir), "written": [str(p) for p in self.written],
                "failed": self.failed}


def require_jupyter() -> None:
    """InputError naming the first missing package of the dev extra that running needs."""
    for name in NEEDS:
        if importlib.util.find_spec(name) is None:
            raise InputError(f"running notebooks needs {name}, which is not installed",
                             key="notebooks", expected="pip install 'flashsim[dev]'")


def find_notebooks(paths: list[str | os.PathLike] | None = None) -> list[Path]:
    """The named .ipynb files, or every notebooks/*.ipynb of the current folder."""
    if not paths:
        found = sorted(SOURCE.glob("*.ipynb"))
        if not found:
            raise InputError("no notebooks here", file=SOURCE,
                             expected="run from the flashsim checkout or name the notebooks")
        return found
    out = []
    for p in map(Path, paths):
        if p.suffix != ".ipynb" or not p.is_file():
            raise InputError("not a notebook file", file=p, expected="an existing .ipynb file")
        out.append(p)
    return out


@contextmanager
def python_kernel() -> Iterator[str]:
    """A kernel name that starts `sys.executable`, registered in a temporary Jupyter path
    for the duration."""
    from ipykernel.kernelspec import install

    old = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="flashsim-kernel-") as prefix:
        install(kernel_name=KERNEL_NAME, prefix=prefix)
        share = str(Path(prefix) / "share" / "jupyter")
        os.environ["JUPYTER_PATH"] = share if not old else share + os.pathsep + old
        try:
            yield KERNEL_NAME
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def execute(path: Path, kernel_name: str, timeout_s: float = 600.0) -> Any:
    """The notebook at `path` run in `kernel_name` from its own folder, outputs in place;
    its kernelspec stays the plain `python3` a reader's Jupyter has."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    spec = nb.metadata.get("kernelspec") or PLAIN_KERNELSPEC
    client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=int(timeout_s),
                                     record_timing=False, extra_arguments=QUIET_KERNEL,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    nb.metadata["kernelspec"] = spec
    return nb


def render_notebooks(paths: list[str | os.PathLike] | None = None,
                     out: str | os.PathLike = DEFAULT_OUT, *, timeout_s: float = 600.0,
                     quiet: bool | None = None) -> Rendered:
    """Run each notebook (default: notebooks/*.ipynb) and write it with its outputs to
    `out`/NAME.ipynb, atomically; a notebook that fails is reported, not written."""
    require_jupyter()
    import nbclient
    import nbformat

    notebooks = find_notebooks(paths)
    result = Rendered(Path(out))
    if any(p.parent.resolve() == result.out_dir.resolve() for p in notebooks):
        raise InputError("is the notebooks' own folder: they would be overwritten with their "
                         "outputs", file=result.out_dir, key="--out",
                         expected="another folder, e.g. " + str(DEFAULT_OUT))
    result.out_dir.mkdir(parents=True, exist_ok=True)
    with python_kernel() as kernel:
        for path in progress(notebooks, total=len(notebooks), desc="notebooks", quiet=quiet,
                             unit="notebook"):
            try:
                nb = execute(path, kernel, timeout_s)
            except (nbclient.exceptions.CellExecutionError, nbclient.exceptions.CellTimeoutError,
                    nbclient.exceptions.DeadKernelError) as exc:
                result.failed.append({"notebook": str(path), "error": _error_line(exc)})
                continue
            target = result.out_dir / path.name
            atomic_write_text(target, nbformat.writes(nb) + "\n")
            result.written.append(target)
    return result


def _error_line(exc: Exception) -> str:
    """`Name: value` of the error a cell raised, or the first line of the executor's error."""
    if getattr(exc, "ename", None):
        return f"{exc.ename}: {exc.evalue}"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def register(subparsers: Any) -> None:
    """Add `notebooks`."""
    p = subparsers.add_parser("notebooks", help="run the notebooks and write them with their "
                                                "figures to a results folder")
    p.add_argument("paths", nargs="*", help="notebooks to run (default: notebooks/*.ipynb)")
    p.add_argument("--out", type=cliargs.out_dir("--out"), default=str(DEFAULT_OUT),
                   help=f"folder for the rendered notebooks (default {DEFAULT_OUT})")
    p.add_argument("--timeout", type=cliargs.number("--timeout", above=0.0, maximum=86400.0),
                   default=600.0, help="seconds a cell may run (default 600)")
    add_json_flag(p)
    p.set_defaults(func=cmd_notebooks)


def cmd_notebooks(args: argparse.Namespace) -> int:
    """Render the notebooks; exit 1 when any failed."""
    result = render_notebooks(args.paths, args.out, timeout_s=args.timeout, quiet=args.json)
    lines = [f"wrote {p}" for p in result.written]
    lines += [f"FAILED {f['notebook']}: {f['error']}" for f in result.failed]
    emit(args, result.to_dict(), "\n".join(lines) or "no notebooks")
    return 1 if result.failed else 0
