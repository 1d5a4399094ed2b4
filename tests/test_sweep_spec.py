"""Sweep YAML: what a grid expands to, stable run ids, and every bad input as a one-line error."""

from __future__ import annotations

import pytest

from flashsim.cli import main
from flashsim.errors import InputError
from flashsim.sweep.grid import axis_points, expand, run_id
from flashsim.sweep.spec import load_sweep
from sweep_fixtures import DEFAULT, smoke_dict, write_yaml

RATES = {"memcpy_bytes_per_s": 1e10, "compute_fixed_s_per_layer": 2e-5,
         "compute_s_per_neuron": 5e-9}


def configs_of(tmp_path, **changes):
    sweep = load_sweep(write_yaml(tmp_path, smoke_dict(**changes)))
    return expand(sweep, {k: RATES for k in _keys(sweep)})


def _keys(sweep):
    from flashsim.sweep.grid import geometry_key
    return {geometry_key(g) for g in sweep.geometries.values()}


def test_full_grid_drops_the_window_of_windowless_layouts(tmp_path):
    runs = configs_of(tmp_path)
    got = sorted((c["layout"], c["window"] or 0, c["queue_depth"]) for c in runs)
    want = sorted([("naive", 0, 4), ("naive", 0, 32), ("sparse", 0, 4), ("sparse", 0, 32)]
                  + [("windowed+bundled", k, q) for k in (2, 5) for q in (4, 32)])
    assert got == want
    assert len({c["run_id"] for c in runs}) == 8
    assert all(c["max_tokens"] == 6 and c["block_bytes"] == 4096 for c in runs)


def test_axes_outside_the_grid_are_zipped(tmp_path):
    runs = configs_of(tmp_path, layouts=["windowed", "windowed+bundled"], windows=[1, 3, 7],
                      queue_depths=[2, 8, 64], grid=["layouts"])
    got = sorted((c["layout"], c["window"], c["queue_depth"]) for c in runs)
    assert got == sorted((name, k, q) for name in ("windowed", "windowed+bundled")
                         for k, q in ((1, 2), (3, 8), (7, 64)))


def test_length_one_axes_broadcast_when_zipped(tmp_path):
    sweep = load_sweep(write_yaml(tmp_path, smoke_dict(
        layouts=["windowed"], windows=[1, 2, 3], queue_depths=[16], grid=[])))
    points = axis_points(sweep)
    assert [(p["windows"], p["queue_depths"]) for p in points] == [(1, 16), (2, 16), (3, 16)]


def test_a_single_value_needs_no_list(tmp_path):
    runs = configs_of(tmp_path, layouts="sparse", queue_depths=16, windows=None)
    assert [(c["layout"], c["queue_depth"]) for c in runs] == [("sparse", 16)]


def test_run_ids_are_stable_and_follow_every_config_value(tmp_path):
    first = {c["run_id"] for c in configs_of(tmp_path)}
    again = {c["run_id"] for c in configs_of(tmp_path)}
    assert first == again
    other_block = {c["run_id"] for c in configs_of(tmp_path, block_bytes="8k")}
    assert first.isdisjoint(other_block)
    config = configs_of(tmp_path)[0]
    moved = dict(config, trace_path="/elsewhere/x.trace", device_path="/elsewhere/d.yaml")
    assert run_id(moved) == config["run_id"]  # where files are is not what a run is
    assert run_id(dict(config, queue_depth=config["queue_depth"] + 1)) != config["run_id"]
    assert run_id(dict(config, trace_sha256="0" * 64)) != config["run_id"]


def test_default_config_names_every_layout_once():
    from flashsim.layout.registry import COMPARE_ORDER

    sweep = load_sweep(DEFAULT)
    assert sorted(sweep.spec.layouts) == sorted(COMPARE_ORDER)
    assert sweep.traces[0].label == "bundled:opt-mini-ref.trace"
    assert sweep.train_trace is not None


BAD = [
    (dict(windows=[2, 0]), "windows.1", "greater than or equal to 1"),
    (dict(windows=[-3]), "windows.0", "greater than or equal to 1"),
    (dict(queue_depths=[0]), "queue_depths.0", "greater than or equal to 1"),
    (dict(queue_depths="many"), "queue_depths.0", "valid integer"),
    (dict(windows={"k": 2}), "windows", "valid list"),
    (dict(layouts=["sparse", "striped"]), "layouts.1", "unknown layout 'striped'"),
    (dict(layouts=[]), "layouts", "zero runs"),
    (dict(queue_depths=[]), "queue_depths", "zero runs"),
    (dict(grid=["layouts", "colours"]), "grid.1", "'traces'"),
    (dict(windws=[2]), "windws", "unknown key 'windws' (expected one of block_bytes"),
    (dict(host={"memcpy_gbs": 3}), "host.memcpy_gbs", "compute_fixed_us_per_layer"),
    (dict(traces=["no/such.trace"]), "traces.0", "file does not exist"),
    (dict(devices=["no/such.yaml"]), "devices.0", "file does not exist"),
    (dict(dram_budgets=["-4k"]), "dram_budgets.0", "must be positive"),
    (dict(engine="warp"), "engine", "'fast' or 'des'"),
    (dict(grid=["layouts"], windows=[1, 2], queue_depths=[1, 2, 3]), "queue_depths",
     "zipped axes differ in length"),
    (dict(devices=None), "devices", "required key is missing"),
]


@pytest.mark.parametrize("changes, key, message", BAD)
def test_bad_sweeps_are_one_line_errors_naming_file_and_key(tmp_path, changes, key, message):
    spec = write_yaml(tmp_path, smoke_dict(**changes))
    with pytest.raises(InputError) as info:
        load_sweep(spec)
    assert info.value.key == key
    assert message in str(info.value)
    assert str(spec) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("changes, key, message", [
    b for b in BAD if b[1] in ("windows.1", "queue_depths.0", "layouts.1", "layouts", "traces.0")])
def test_cli_exits_2_and_writes_nothing(tmp_path, capsys, changes, key, message):
    spec = write_yaml(tmp_path, smoke_dict(**changes))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{key}: " in err and message in err
    assert not out.exists()


def test_malformed_yaml_and_bad_device_profile(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layouts: [sparse\nqueue_depths: 4\n")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o1")]) == 2
    assert "malformed YAML at line" in capsys.readouterr().err
    profile = tmp_path / "dev.yaml"
    profile.write_text("name: x\npoints: []\n")
    spec = write_yaml(tmp_path, smoke_dict(devices=[str(profile)]))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "devices.0: bad device profile" in err and "points" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_bad_executor_options_write_nothing(tmp_path, capsys):
    spec = write_yaml(tmp_path, smoke_dict())
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "0"]) == 2
    assert main(["sweep", str(spec), "--out", str(out), "--scheduler", "tcp://x:1"]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and "--scheduler is for the dask executor" in err
    assert not out.exists()
