"""The CLI's error contract: bad input is one line and exit 2 wherever it is found (also in a
value's parser), a bug is one line and exit 1, a closed pipe is a quiet exit."""

import subprocess
import sys
from pathlib import Path

import pytest

from flashsim import __version__
from flashsim.cli import main
from flashsim.config import read_yaml
from flashsim.errors import InputError

M1MAX = "flashsim/data/devices/m1max-paper.yaml"


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


def one_line_exit_2(capsys, argv: list[str]) -> str:
    """Run `flashsim ARGV`: exit 2 and one line on stderr; that line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    return err


def test_a_queue_depth_beyond_any_device_is_refused_before_allocating(capsys):
    err = one_line_exit_2(capsys, ["device", "predict", "--profile", M1MAX, "--chunk", "4k",
                                   "--qd", "50000000"])
    assert "--qd" in err and "65536" in err


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "fast"])
def test_a_rate_must_be_positive_and_finite(capsys, value):
    err = one_line_exit_2(capsys, ["simulate", "--device", M1MAX, f"--memcpy-gb-s={value}"])
    assert "--memcpy-gb-s" in err


def test_a_lone_double_dash_as_a_value_is_a_missing_value(capsys):
    code = None
    with pytest.raises(SystemExit) as exc:
        code = main(["simulate", "--device", M1MAX, "--qd=--"])
    assert code is None and exc.value.code == 2
    assert "--qd" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["folder", "under-a-file", "no-parent", "read-only"])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(capsys, tmp_path,
                                                                          where):
    (tmp_path / "f").write_text("")
    out = {"folder": tmp_path, "under-a-file": tmp_path / "f" / "x.png",
           "no-parent": tmp_path / "nowhere" / "x.png", "read-only": "/proc/x.png"}[where]
    err = one_line_exit_2(capsys, ["compare", "--device", M1MAX, "--plot", str(out)])
    assert "--plot" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_trace_with_a_valid_checksum_but_no_geometry_key_names_file_and_key(tmp_path, capsys):
    import json

    import numpy as np

    from flashsim.data import REFERENCE_TRACE
    from flashsim.trace.format import _checksum

    with np.load(REFERENCE_TRACE) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays.pop("meta_json").tobytes().decode())
    del meta["geometry"]["d_ffn"]
    meta["sha256"] = _checksum(arrays)
    path = tmp_path / "bad.trace"
    with open(path, "wb") as handle:
        np.savez(handle, meta_json=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    err = one_line_exit_2(capsys, ["trace", "info", str(path)])
    assert str(path) in err and "geometry.d_ffn" in err and "missing" in err


@pytest.mark.parametrize("bandwidth", [1e-300, 1e300, float("inf")])
def test_a_profile_bandwidth_outside_physics_is_refused(tmp_path, capsys, bandwidth):
    data = read_yaml(M1MAX)
    data["params"]["units"]["bandwidth_mb_s"] = bandwidth
    path = tmp_path / "p.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data))
    err = one_line_exit_2(capsys, ["device", "show", "--profile", str(path)])
    assert str(path) in err and "params.units.bandwidth_mb_s" in err


def test_a_profile_of_another_schema_version_is_refused(tmp_path):
    from flashsim.device.profile import DeviceProfile

    data = dict(read_yaml(M1MAX), schema_version=3)
    with pytest.raises(InputError, match="schema version 3"):
        DeviceProfile.from_dict(data, file="p.yaml")


@pytest.mark.parametrize("read", [None, {"io_bytes": 4096}, "lots",
                                  {"io_bytes": 4096, "bw_bytes": 1e6, "lat_ns": "fast"},
                                  {"io_bytes": 4096, "bw_bytes": 1e6, "lat_ns": {"mean": "x"}}])
def test_fio_json_with_missing_or_malformed_fields_is_an_input_error(tmp_path, read):
    import json

    from flashsim.device.fio import points_from_fio

    job = {"jobname": "j", "job options": {"rw": "randread", "direct": "1", "bs": "4k"}}
    if read is not None:
        job["read"] = read
    path = tmp_path / "fio.json"
    path.write_text(json.dumps({"jobs": [job]}))
    with pytest.raises(InputError) as exc:
        points_from_fio([path])
    assert str(path) in str(exc.value) and "jobs.j" in str(exc.value)


def test_fio_iodepth_that_is_no_number_is_an_input_error(tmp_path):
    import json

    from flashsim.device.fio import points_from_fio

    job = {"jobname": "j", "job options": {"rw": "randread", "direct": "1", "bs": "4k",
                                           "iodepth": "deep"}}
    path = tmp_path / "fio.json"
    path.write_text(json.dumps({"jobs": [job]}))
    with pytest.raises(InputError, match="iodepth"):
        points_from_fio([path])


def test_validate_with_a_missing_store_builds_nothing(tmp_path, capsys):
    store = tmp_path / "typo.ffn"
    err = one_line_exit_2(capsys, ["validate", "--store", str(store), "--device", M1MAX,
                                   "--layouts", "naive", "--tokens", "2"])
    assert "store does not exist" in err and "--build-stores" in err
    assert not store.exists() and list(tmp_path.iterdir()) == []


def test_the_api_refuses_what_the_cli_refuses():
    from flashsim.units import check_queue_depth
    from flashsim.validation.spec import queue_depths

    assert check_queue_depth(65536) == 65536
    for bad in (0, 65537, True, 2.5, float("nan"), "8"):
        with pytest.raises(InputError):
            check_queue_depth(bad)
    with pytest.raises(ValueError, match="65536"):
        queue_depths([1, 50_000_000])


def _sweep_with(tmp_path, **changes) -> str:
    """The smoke sweep with text replaced; its bundled traces and profiles stay valid."""
    src = Path("configs/sweeps/smoke.yaml").read_text()
    for old, new in changes.items():
        src = src.replace(old, new)
    path = tmp_path / "sweep.yaml"
    path.write_text(src)
    return str(path)


def test_a_sweep_with_an_infinite_rate_or_an_unknown_bundled_device_names_its_file(
        tmp_path, capsys):
    bad = _sweep_with(tmp_path, **{"memcpy_gb_s: 10.0": "memcpy_gb_s: .inf"})
    err = one_line_exit_2(capsys, ["sweep", bad, "--out", str(tmp_path / "out")])
    assert "memcpy_gb_s" in err and "sweep.yaml" in err
    bad = _sweep_with(tmp_path, **{"bundled:m1max-paper.yaml": "bundled:nope.yaml"})
    err = one_line_exit_2(capsys, ["sweep", bad, "--out", str(tmp_path / "out")])
    assert "sweep.yaml" in err and "devices" in err and "nope" in err
    assert not (tmp_path / "out").exists()


def test_a_synthetic_trace_too_big_for_this_machine_is_refused(tmp_path, capsys):
    out = tmp_path / "big-synthetic.trace"
    err = one_line_exit_2(capsys, ["trace", "synth", "--tokens", "1048576", "--out", str(out)])
    assert "GiB" in err and "tokens" in err and not out.exists()


def test_calibrating_a_file_smaller_than_one_read_makes_no_file(tmp_path, capsys):
    data = tmp_path / "d.bin"
    err = one_line_exit_2(capsys, ["calibrate", "--file", str(data), "--size", "4k",
                                   "--holdout", "12k/3", "--out", str(tmp_path / "p.yaml")])
    assert "smaller than one" in err and not data.exists()


def test_mmap_validation_with_a_missing_store_builds_nothing(tmp_path, capsys):
    store = tmp_path / "nope"
    err = one_line_exit_2(capsys, ["validate", "--layouts", "mmap-sparse", "--device",
                                   "m1max-paper", "--store", str(store), "--qd", "1"])
    assert "--build-stores" in err and not store.exists()


def test_mmap_validation_with_an_unknown_page_cache_model_is_refused(tmp_path, capsys):
    err = one_line_exit_2(capsys, ["validate", "--layouts", "mmap-sparse", "--device",
                                   "m1max-paper", "--store", str(tmp_path), "--qd", "1",
                                   "--page-cache", "lru,fifo"])
    assert "--page-cache" in err and "two-list" in err


def test_the_fault_probe_is_refused_outside_mmap_rows(tmp_path, capsys):
    err = one_line_exit_2(capsys, ["validate", "--layouts", "sparse", "--device",
                                   "m1max-paper", "--store", str(tmp_path), "--qd", "1",
                                   "--fault-probe"])
    assert "--fault-probe" in err and "mmap" in err


@pytest.mark.parametrize("value", ["lots", "0", "2000000"])
def test_bad_clustered_reads_are_refused_before_a_data_file_is_made(tmp_path, capsys, value):
    data = tmp_path / "d.bin"
    err = one_line_exit_2(capsys, ["calibrate", "--file", str(data), "--size", "1m",
                                   "--clustered-reads", value, "--out", str(tmp_path / "p.yaml")])
    assert "--clustered-reads" in err and not data.exists()
