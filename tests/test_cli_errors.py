"""The CLI's error contract: bad input is one line and exit 2 wherever it is found (also in a
value's parser), a bug is one line and exit 1, a closed pipe is a quiet exit."""

import subprocess
import sys

import pytest

from flashsim import __version__
from flashsim.cli import main
from flashsim.config import read_yaml
from flashsim.errors import InputError

M1MAX = "configs/devices/m1max-paper.yaml"


def test_a_size_refused_by_its_parser_is_one_line_and_exit_2(capsys):
    assert main(["simulate", "--device", M1MAX, "--block", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--block" in err and "must be positive" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"flashsim {__version__}"


def test_a_bug_is_one_line_and_exit_1(capsys, monkeypatch):
    import flashsim.cost.commands as commands

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(commands, "cmd_simulate", broken)
    monkeypatch.delenv("FLASHSIM_TRACEBACK", raising=False)
    assert main(["simulate", "--device", M1MAX]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError" in err


def test_a_closed_pipe_exits_quietly():
    cmd = (f"{sys.executable} -m flashsim simulate --device {M1MAX} --json --tokens "
           "| head -c 10 > /dev/null")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert done.returncode == 0


def test_yaml_with_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nqueue_depths: [1]\nname: b\n")
    with pytest.raises(InputError, match="'name' is given twice") as exc:
        read_yaml(path)
    assert str(path) in str(exc.value) and "line 3" in str(exc.value)


def test_nested_duplicate_keys_are_refused_too(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("params:\n  n_units: 4\n  n_units: 8\n")
    with pytest.raises(InputError, match="'n_units' is given twice"):
        read_yaml(path)
