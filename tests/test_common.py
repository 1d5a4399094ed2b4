"""Sizes, strict YAML loading, atomic writes, the CLI's one-line errors."""

import errno
import os

import pytest

from flashsim.atomic import atomic_write, check_free_space
from flashsim.cli import main
from flashsim.config import SizeBytes, StrictModel, load_yaml_model
from flashsim.errors import InputError
from flashsim.units import format_size, parse_int_list, parse_size


@pytest.mark.parametrize("text, expected", [
    ("4k", 4096), ("4K", 4096), ("32KiB", 32768), ("1m", 1 << 20), ("2GiB", 2 << 30),
    ("512", 512), (8192, 8192), ("1.5k", 1536), ("16 KiB", 16384), ("4kb", 4096)])
def test_parse_size_accepts_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["-4k", "4q", "", "k", "0", "1.3k", "iB", True, None, "4 k b"])
def test_parse_size_rejects_bad_sizes(text):
    with pytest.raises(InputError):
        parse_size(text, key="chunk")


def test_format_size_round_trips():
    for n in (4096, 32768, 1 << 20, 3 << 30, 1536):
        assert parse_size(format_size(n)) == n


def test_parse_int_list_rejects_zero_queue_depth():
    assert parse_int_list("1,8,32", key="qd") == [1, 8, 32]
    with pytest.raises(InputError, match="qd"):
        parse_int_list("1,0", key="qd")


class _Inner(StrictModel):
    chunk_bytes: SizeBytes
    queue_depth: int


class _Outer(StrictModel):
    name: str
    points: list[_Inner]


def test_yaml_unknown_key_names_file_key_and_allowed(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: a\npoints:\n  - {chunk_bytes: 4k, queue_depht: 1}\n")
    with pytest.raises(InputError) as err:
        load_yaml_model(p, _Outer)
    msg = str(err.value)
    assert str(p) in msg and "points.0.queue_depht" in msg and "queue_depth" in msg
    assert "\n" not in msg


def test_yaml_bad_size_and_malformed(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: a\npoints:\n  - {chunk_bytes: -4k, queue_depth: 1}\n")
    with pytest.raises(InputError, match=r"points\.0\.chunk_bytes.*must be positive"):
        load_yaml_model(p, _Outer)
    p.write_text("name: [a\n")
    with pytest.raises(InputError, match="malformed YAML at line"):
        load_yaml_model(p, _Outer)
    with pytest.raises(InputError, match="does not exist"):
        load_yaml_model(tmp_path / "missing.yaml", _Outer)
    p.write_text("name: a\npoints:\n  - {chunk_bytes: 4k, queue_depth: 1}\n")
    assert load_yaml_model(p, _Outer).points[0].chunk_bytes == 4096


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_write(target) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_disk_full_is_input_error(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(InputError, match="disk full"):
        with atomic_write(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_check_free_space(tmp_path):
    check_free_space(tmp_path / "f", 1)
    with pytest.raises(InputError, match="not enough free disk space"):
        check_free_space(tmp_path / "f", 1 << 62)


def test_cli_usage_error_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
