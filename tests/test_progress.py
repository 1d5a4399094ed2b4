"""Progress bars: shown on a terminal (or when forced), never under --json, never when stderr
is not a terminal, and never from a library call that did not ask for them."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from flashsim import cli
from flashsim.progress import (
    FORCE_ENV,
    progress,
    progress_counter,
    progress_enabled,
    progress_shown,
)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> _Terminal:
    """Outside CI, nothing forced; the test sets `sys.stderr` to this terminal itself (pytest
    puts its own capture back between a fixture and the test)."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(FORCE_ENV, raising=False)
    return _Terminal()


def test_a_library_call_is_silent_unless_it_asks(terminal: _Terminal,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", terminal)
    assert not progress_enabled()  # quiet=None outside the CLI: no bar
    assert progress_enabled(quiet=False)
    assert not progress_enabled(quiet=True)
    with progress_shown(True):
        assert progress_enabled()
        assert not progress_enabled(quiet=True)
        with progress_shown(None):  # keeps the surrounding choice
            assert progress_enabled()
        with progress_shown(False):
            assert not progress_enabled()
    assert not progress_enabled()


def test_ci_and_a_pipe_silence_bars_and_the_variable_forces_them(
        terminal: _Terminal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("CI", "1")
    assert not progress_enabled(quiet=False)
    monkeypatch.setenv(FORCE_ENV, "1")
    assert progress_enabled(quiet=False)
    assert not progress_enabled(quiet=True)  # --json wins over forcing
    monkeypatch.delenv("CI")
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert progress_enabled(quiet=False)
    monkeypatch.setenv(FORCE_ENV, "0")
    monkeypatch.setattr(sys, "stderr", terminal)
    assert not progress_enabled(quiet=False)


def test_bars_write_to_stderr_only_when_enabled(terminal: _Terminal,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress(range(3), total=3, desc="quiet-bar")) == [0, 1, 2]
    with progress_counter("quiet-counter", total=2) as tick:
        tick()
        tick(1)
    assert terminal.getvalue() == ""
    with progress_shown(True):
        assert list(progress(range(3), total=3, desc="shown-bar")) == [0, 1, 2]
        with progress_counter("shown-counter", total=2) as tick:
            tick(2)
    assert "shown-bar" in terminal.getvalue() and "shown-counter" in terminal.getvalue()


def _store_build(tmp_path: Path, *extra: str) -> list[str]:
    return ["store", "build", "--layout", "bundled", "--out", str(tmp_path / "s.ffn"), *extra]


def test_cli_bar_when_forced_none_under_json_or_off_a_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # `store build` writes the store layer by layer: a bar inside the API, asked for by the CLI
    monkeypatch.delenv(FORCE_ENV, raising=False)
    assert cli.main(_store_build(tmp_path)) == 0
    assert capsys.readouterr().err == ""  # stderr is not a terminal here
    monkeypatch.setenv(FORCE_ENV, "1")
    assert cli.main(_store_build(tmp_path)) == 0
    assert "store s.ffn" in capsys.readouterr().err
    assert cli.main(_store_build(tmp_path, "--json")) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert json.loads(captured.out)["store"] == str(tmp_path / "s.ffn")


def test_the_compute_calibration_shows_a_bar_only_when_asked(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from flashsim.cost.compute_decode import time_decode

    monkeypatch.setenv(FORCE_ENV, "1")
    time_decode(prompt_tokens=4, n_tokens=2)
    assert capsys.readouterr().err == ""  # a library call: silent
    with progress_shown(True):
        time_decode(prompt_tokens=4, n_tokens=2)
    assert "compute calibration" in capsys.readouterr().err
