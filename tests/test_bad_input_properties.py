"""Property tests of the bad-input contract: whatever is malformed (a trace's metadata behind a
valid checksum, a profile value or key, a sweep file, a command-line value, an output path),
the CLI ends with exit 2, exactly one line on stderr, and nothing new on disk."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flashsim.cli import main
from flashsim.data import bundled_device_path
from flashsim.errors import InputError
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.trace.format import ActivationTrace, _checksum

PROFILE = "m1max-paper"
PROFILE_FILE = bundled_device_path(PROFILE)
SWEEP = "configs/sweeps/smoke.yaml"
FAST = settings(max_examples=int(os.environ.get("FLASHSIM_PROPERTY_EXAMPLES", "10")),
                deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
"""Few examples in the default tier (a few seconds); FLASHSIM_PROPERTY_EXAMPLES=500 searches
further."""


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`flashsim ARGV` in this process: (exit code, stderr); argparse's own usage errors
    raise SystemExit, which a shell sees as the same exit code."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def assert_refused(argv: list[str], folder: Path) -> str:
    """Exit 2, one line on stderr, and `folder` exactly as it was."""
    before = sorted(os.listdir(folder))
    code, err = run_cli(argv)
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)
    assert "Traceback" not in err
    assert sorted(os.listdir(folder)) == before, argv
    return err


# ---- traces: valid checksum, broken metadata ---------------------------------------------

def tiny_trace() -> ActivationTrace:
    g = ModelGeometry("tiny", n_layers=2, d_model=8, d_ffn=16, dtype_bytes=2)
    sets = [NeuronSets.from_lists([[1, 3, 5], [0, 2], [4, 7, 9, 11]]) for _ in range(2)]
    return ActivationTrace(g, np.array([5, 6, 7]), 1, sets, None, {"model": "tiny"})


def write_raw(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """A trace file with `meta` as given and a checksum that matches `arrays`."""
    meta = dict(meta, sha256=_checksum(arrays))
    with open(path, "wb") as handle:  # a handle: np.savez would append .npz to a path
        np.savez_compressed(handle, meta_json=np.frombuffer(json.dumps(meta).encode(),
                                                            np.uint8), **arrays)


def raw_parts(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(arrays.pop("meta_json").tobytes().decode()), arrays


NOT_A_COUNT = st.one_of(st.none(), st.booleans(), st.integers(max_value=0),
                        st.floats(allow_nan=True), st.text(max_size=4),
                        st.lists(st.integers(), max_size=2))
GEOMETRY_KEYS = ("name", "n_layers", "d_model", "d_ffn", "dtype_bytes")


@st.composite
def broken_meta(draw):
    """(what was done, a function that breaks a trace's metadata or arrays)."""
    kind = draw(st.sampled_from(["drop", "bad_value", "layers", "not_mapping", "ids",
                                 "prompt", "has_predicted", "extra_key"]))
    key = draw(st.sampled_from(GEOMETRY_KEYS))
    value = draw(NOT_A_COUNT if key != "name" else st.one_of(st.none(), st.integers()))
    n_layers = draw(st.integers(-3, 6).filter(lambda n: n != 2))
    prompt = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=4), st.none(),
                            st.floats(), st.text(max_size=2)))
    dup = draw(st.booleans())

    def breaker(meta: dict, arrays: dict[str, np.ndarray]) -> None:
        geometry = meta["geometry"]
        if kind == "drop":
            del geometry[key]
        elif kind == "bad_value":
            geometry[key] = value
        elif kind == "layers":
            geometry["n_layers"] = n_layers
        elif kind == "not_mapping":
            meta["geometry"] = [1, 2]
        elif kind == "ids":
            ids = arrays["active_ids_1"].copy()
            ids[:2] = (ids[0], ids[0]) if dup else (ids[1], ids[0])  # a repeat, or unsorted
            arrays["active_ids_1"] = ids
        elif kind == "prompt":
            meta["n_prompt_tokens"] = prompt
        elif kind == "has_predicted":
            meta["has_predicted"] = True
        else:
            geometry["n_heads"] = 4
    return kind, breaker


@FAST
@given(broken=broken_meta())
def test_a_trace_with_broken_metadata_is_one_line_naming_the_file(broken):
    kind, breaker = broken
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        good = folder / "good.trace"
        tiny_trace().save(good)
        meta, arrays = raw_parts(good)
        breaker(meta, arrays)
        bad = folder / "bad.trace"
        write_raw(bad, meta, arrays)
        with pytest.raises(InputError) as exc:
            ActivationTrace.load(bad)
        assert str(bad) in str(exc.value) and "does not exist" not in str(exc.value), kind
        err = assert_refused(["trace", "info", str(bad)], folder)
        assert str(bad) in err


def test_the_tiny_trace_itself_loads(tmp_path):
    tiny_trace().save(tmp_path / "t.trace")
    meta, arrays = raw_parts(tmp_path / "t.trace")
    write_raw(tmp_path / "again.trace", meta, arrays)
    assert ActivationTrace.load(tmp_path / "again.trace").n_tokens == 3


# ---- device profiles ---------------------------------------------------------------------

BAD_NUMBERS = st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0, -1, "fast",
                               [1.0], {"a": 1}, True])
PARAM_KEYS = (("host", "overhead_us"), ("units", "command_latency_us"), ("units", "n_units"),
              ("units", "bandwidth_mb_s"), ("link", "bandwidth_mb_s"), ("units", "stripe_bytes"),
              ("link", "overhead_us"), ("units", "command_latency_spread"),
              ("link", "congestion_per_read"))
"""(stage, key) of parameters in the profile file (params nested by stage)."""
POINT_KEYS = ("chunk_bytes", "queue_depth", "throughput_mb_s", "latency_mean_us",
              "latency_p99_us")


@st.composite
def broken_profile(draw):
    """A profile mapping with one bad value, a missing or unknown key, or another version."""
    data = copy.deepcopy(yaml.safe_load(PROFILE_FILE.read_text()))
    kind = draw(st.sampled_from(["param", "point", "bandwidth", "drop", "unknown", "version"]))
    if kind == "param":
        stage, key = draw(st.sampled_from(PARAM_KEYS))
        data["params"][stage][key] = draw(BAD_NUMBERS)
    elif kind == "point":
        i = draw(st.integers(0, len(data["points"]) - 1))
        data["points"][i][draw(st.sampled_from(POINT_KEYS))] = draw(BAD_NUMBERS)
    elif kind == "bandwidth":
        stage = draw(st.sampled_from(["units", "link"]))
        data["params"][stage]["bandwidth_mb_s"] = draw(st.sampled_from([1e-300, 1e300, 1e-4,
                                                                         1e12]))
    elif kind == "drop":
        del data[draw(st.sampled_from(["name", "points"]))]
    elif kind == "unknown":
        data["params"][draw(st.sampled_from(["n_unit", "bandwidth", "x"]))] = 1
    else:
        data["schema_version"] = draw(st.sampled_from([0, 3, "1", None, 1.5]))
    return kind, data


@FAST
@given(broken=broken_profile())
def test_a_broken_profile_is_one_line_exit_2(broken):
    kind, data = broken
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "bad.yaml"
        path.write_text(yaml.safe_dump(data))
        err = assert_refused(["device", "show", "--profile", str(path)], folder)
        assert str(path) in err, kind
        assert_refused(["device", "predict", "--profile", str(path), "--chunk", "4k",
                        "--qd", "4"], folder)


@FAST
@given(key=st.sampled_from(["name", "description", "points"]))
def test_a_profile_key_given_twice_is_refused(key):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "dup.yaml"
        path.write_text(PROFILE_FILE.read_text() + f"\n{key}: again\n")
        err = assert_refused(["device", "show", "--profile", str(path)], folder)
        assert "given twice" in err


# ---- sweep files -------------------------------------------------------------------------

SWEEP_BAD = {"queue_depths": st.sampled_from([0, -1, 5000, "many", [0], [None], 1.5]),
             "windows": st.sampled_from([0, -2, "wide", [0]]),
             "layouts": st.sampled_from(["bogus", [], [3], ["naive", "nope"]]),
             "block_bytes": st.sampled_from([0, "-4k", "4q", [4096]]),
             "merge_gap": st.sampled_from(["lots", -1, [1]]),
             "max_tokens": st.sampled_from([0, -1, "all"]),
             "devices": st.sampled_from([[], ["nowhere.yaml"], "bundled:nope.yaml"]),
             "traces": st.sampled_from([["nowhere.trace"], [3]]),
             "name": st.sampled_from(["has space", "a/b", 3]),
             "grid": st.sampled_from([["colour"], "layouts"]),
             "host": st.sampled_from([{"memcpy_gb_s": 0}, {"memcpy_gb_s": -1},
                                      {"compute_ns_per_neuron": 5.0}, "fast"]),
             "colour": st.just("red")}


@st.composite
def broken_sweep(draw):
    data = yaml.safe_load(Path(SWEEP).read_text())
    key = draw(st.sampled_from(sorted(SWEEP_BAD)))
    data[key] = draw(SWEEP_BAD[key])
    return key, data


@FAST
@given(broken=broken_sweep())
def test_a_broken_sweep_file_is_one_line_and_writes_nothing(broken):
    key, data = broken
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "bad.yaml"
        path.write_text(yaml.safe_dump(data))
        err = assert_refused(["sweep", str(path), "--out", str(folder / "out"),
                              "--workers", "1"], folder)
        assert str(path) in err or key.rstrip("s") in err, key


# ---- command-line values -----------------------------------------------------------------

NOT_NUMBERS = st.sampled_from(["", "x", "1e3", "0x10", "1,,x", "nan", "inf", "--", "4k"])
BAD_QD = st.one_of(st.integers(max_value=0), st.integers(min_value=65537), NOT_NUMBERS)
BAD_COUNT = st.one_of(st.integers(max_value=0), st.integers(min_value=(1 << 20) + 1),
                      NOT_NUMBERS)
BAD_RATE = st.one_of(st.floats(max_value=0.0), st.sampled_from(["nan", "inf", "-inf", "x", ""]))
BAD_SIZE = st.one_of(st.integers(max_value=0), st.sampled_from(["4q", "-4k", "1.5", "k", "",
                                                                "1ib", "4 k b", "2TiB"]))
BAD_BLOCK = st.one_of(BAD_SIZE, st.sampled_from(["3k", "1000", "128m"]))
BAD_PROB = st.one_of(st.floats(min_value=1.0001, allow_infinity=True),
                     st.floats(max_value=-0.0001), st.sampled_from(["nan", "x"]))

CASES = [
    (["simulate", "--device", PROFILE], "--qd", BAD_QD),
    (["device", "predict", "--profile", PROFILE, "--chunk", "4k"], "--qd", BAD_QD),
    (["device", "predict", "--profile", PROFILE, "--qd", "4"], "--chunk", BAD_SIZE),
    (["simulate", "--device", PROFILE], "--memcpy-gb-s", BAD_RATE),
    (["simulate", "--device", PROFILE], "--block", BAD_BLOCK),
    (["simulate", "--device", PROFILE], "--window", BAD_COUNT),
    (["simulate", "--device", PROFILE], "--hot-threshold", BAD_PROB),
    (["generate", "--store", "s.ffn", "--prompt-file", "p.txt"], "--top-p", BAD_PROB),
    (["trace", "synth", "--out", "OUT/s.trace"], "--tokens", BAD_COUNT),
    (["validate", "--store", "OUT/s", "--device", PROFILE], "--qd", BAD_QD),
    (["validate", "--store", "OUT/s", "--device", PROFILE], "--reps", BAD_COUNT),
    (["export-fio", "--store", "s.ffn", "--out", "OUT/fio"], "--qd", BAD_QD),
    (["run", "--out", "OUT/run"], "--workers", BAD_COUNT),
]


@FAST
@given(case=st.sampled_from(CASES), data=st.data())
def test_a_bad_value_is_refused_before_any_work(case, data):
    base, flag, values = case
    value = data.draw(values)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        argv = [a.replace("OUT", tmp) for a in base] + [f"{flag}={value}"]
        err = assert_refused(argv, folder)
        assert flag in err or "argument" in err, err


BAD_OUT = st.sampled_from(["FOLDER", "FILE/x", "MISSING/x", "/proc/flashsim-x"])
OUT_CASES = [
    (["compare", "--device", PROFILE, "--plot"], "{}.png"),
    (["trace", "synth", "--tokens", "2", "--out"], "{}.trace"),
    (["calibrate", "--file", "data", "--out"], "{}.yaml"),
    (["device", "fit", "--profile", PROFILE, "--out"], "{}.yaml"),
    (["store", "build", "--out"], "{}.ffn"),
    (["validate", "--store", "OUT/s", "--device", PROFILE, "--report"], "{}.png"),
    (["sweep", SWEEP, "--out"], "{}"),
    (["export-fio", "--store", "s.ffn", "--out"], "{}"),
]


@FAST
@given(case=st.sampled_from(OUT_CASES), where=BAD_OUT)
def test_an_output_path_that_cannot_be_written_is_refused_first(case, where):
    base, pattern = case
    assume(not (pattern == "{}" and where == "MISSING/x"))  # a folder's missing parents are made
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "FOLDER").mkdir()
        (folder / "FILE").write_text("")
        target = where if where.startswith("/") else str(folder / where)
        out = pattern.format(target)
        if where == "FOLDER":  # a folder where a file goes, a file where a folder goes
            out = str(folder / ("FILE" if pattern == "{}" else "FOLDER"))
        argv = [a.replace("OUT", tmp) for a in base] + [out]
        assert_refused(argv, folder)
