"""The merge gap as a cost decision: break-even by hand, the CLI's --merge-gap, the sweep key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flashsim.cli import main
from flashsim.device.gap import (
    LARGE_CHUNK_BYTES,
    break_even,
    break_even_gap_bytes,
    parse_merge_gap,
    resolve_merge_gap,
)
from flashsim.device.profile import DeviceParams
from flashsim.errors import InputError
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.trace.format import ActivationTrace
from sweep_fixtures import smoke_dict, write_yaml

LOCAL = Path(__file__).resolve().parents[1] / "flashsim" / "data" / "devices" / "local-virtio.yaml"
BLOCK = 4096


def serial(latency_us: float, mb_s: float) -> DeviceParams:
    """One flash unit, no host time, no link limit: every read takes latency + chunk / bandwidth,
    one after the other whatever the queue depth."""
    return DeviceParams(host_overhead_us=0.0, command_latency_us=latency_us, n_units=1,
                        unit_bandwidth_mb_s=mb_s, link_bandwidth_mb_s=1e6, stripe_bytes=65536)


@pytest.mark.parametrize("qd", [1, 32])
@pytest.mark.parametrize("block", [512, 4096])
def test_break_even_by_hand(qd, block):
    # a read costs a = 100 µs plus b = 1 / 400 MB/s per byte: merging through g bytes pays
    # while g < a / b = 100e-6 s × 400e6 B/s = 40000 bytes: 9 blocks of 4 KiB, 78 of 512 B
    expected = {4096: 9 * 4096, 512: 78 * 512}[block]
    assert break_even_gap_bytes(serial(100.0, 400.0), qd, block) == expected
    be = break_even(serial(100.0, 400.0), qd, block)
    assert be.per_read_us == pytest.approx(100.0, rel=1e-6)
    assert be.per_kib_us == pytest.approx(1024 / 400.0, rel=1e-6)


@pytest.mark.parametrize("latency_us", [0.0, 5.0])
def test_no_gap_when_the_per_read_cost_is_negligible(latency_us):
    # 5 µs × 400 MB/s = 2000 bytes: less than one block
    assert break_even_gap_bytes(serial(latency_us, 400.0), 32, BLOCK) == 0


def test_gap_stays_inside_the_span_of_the_cost_line():
    # 10 ms per read at 4 GB/s: a / b = 40 MB, far past the 256 KiB read the line was drawn to;
    # a merged pair of one-block reads (2 blocks + gap) must stay within it
    assert break_even_gap_bytes(serial(10_000.0, 4000.0), 1, BLOCK) == LARGE_CHUNK_BYTES - 2 * BLOCK


def test_local_profile_gap_is_positive_and_shrinks_with_queue_depth():
    deep = break_even_gap_bytes(LOCAL, 32, BLOCK)
    assert deep > 0 and deep % BLOCK == 0
    assert break_even_gap_bytes(LOCAL, 1, BLOCK) > deep  # queueing amortizes per-read costs


def test_settings_parse_and_junk_is_an_input_error():
    assert parse_merge_gap("auto") == "auto" and parse_merge_gap("AUTO") == "auto"
    assert parse_merge_gap("0") == 0 and parse_merge_gap("8k") == 8192
    assert parse_merge_gap(16384) == 16384
    for junk in ("fast", "-4k", True, None):
        with pytest.raises(InputError) as info:
            parse_merge_gap(junk, key="--merge-gap")
        assert info.value.key == "--merge-gap" and "auto" in str(info.value)
    fixed = resolve_merge_gap("8k", serial(100.0, 400.0), 32, BLOCK)
    assert (fixed.gap_bytes, fixed.auto, fixed.break_even) == (8192, False, None)


# ---- CLI ----------------------------------------------------------------------------------

G = ModelGeometry("hand-block", 2, 2048, 16, 2)  # 4 KiB rows: fc1 of a layer spans 64 KiB
PROFILE = """name: hand-gap
description: test fixture, not a measured device
points:
  - {chunk_bytes: 4k, queue_depth: 1, throughput_mb_s: 40, source: assumption}
  - {chunk_bytes: 4k, queue_depth: 32, throughput_mb_s: 40, source: assumption}
  - {chunk_bytes: 1m, queue_depth: 1, throughput_mb_s: 390, source: assumption}
  - {chunk_bytes: 1m, queue_depth: 32, throughput_mb_s: 390, source: assumption}
params: {host_overhead_us: 0, command_latency_us: 100, n_units: 1, unit_bandwidth_mb_s: 400,
         link_bandwidth_mb_s: 1000000, stripe_bytes: 65536}
"""
HAND_GAP = 9 * 4096  # floor(100 µs × 400 MB/s / 4 KiB) blocks


@pytest.fixture
def files(tmp_path):
    layers = [NeuronSets.from_lists([[0], [1, 5], [3]]), NeuronSets.from_lists([[0], [2], [7]])]
    ActivationTrace(G, [0, 1, 2], 1, layers, layers, {"name": "hand"}).save(tmp_path / "hand.trace")
    (tmp_path / "hand-gap.yaml").write_text(PROFILE)
    return tmp_path


def _simulate(files, capsys, *extra):
    code = main(["simulate", "--trace", str(files / "hand.trace"), "--device",
                 str(files / "hand-gap.yaml"), "--layout", "sparse", "--memcpy-gb-s", "1",
                 *extra])
    assert code == 0
    return capsys.readouterr().out


# token 1 reads neurons 1 and 5 in layer 0: fc1 rows 1 and 5 (blocks 1 and 5, 12 KiB apart)
# and the same fc2 columns 64 KiB further on; a gap of 12 KiB or more merges each pair into
# one 20 KiB read (4 reads of 4 KiB become 2 of 20 KiB); nothing else is within 36 KiB
@pytest.mark.parametrize("setting, gap, auto, reads, token1_bytes", [
    (None, HAND_GAP, True, [4, 4], 2 * 20480 + 2 * 4096),
    ("auto", HAND_GAP, True, [4, 4], 2 * 20480 + 2 * 4096),
    ("0", 0, False, [6, 4], 6 * 4096),
    ("8k", 8192, False, [6, 4], 6 * 4096),
    ("12k", 12288, False, [4, 4], 2 * 20480 + 2 * 4096),
])
def test_simulate_merge_gap_json(files, capsys, setting, gap, auto, reads, token1_bytes):
    extra = [] if setting is None else ["--merge-gap", setting]
    out = json.loads(_simulate(files, capsys, "--json", *extra))
    assert (out["merge_gap_bytes"], out["merge_gap_auto"]) == (gap, auto)
    assert out["params"]["merge_gap_bytes"] == gap
    assert [t["reads"] for t in out["tokens"]] == reads
    assert out["tokens"][0]["bytes"] == token1_bytes
    assert ("merge_gap_break_even" in out) == auto
    if auto:
        assert out["merge_gap_break_even"]["per_read_us"] == pytest.approx(100.0, rel=1e-6)


def test_simulate_header_says_the_gap_and_why(files, capsys):
    text = _simulate(files, capsys, "--qd", "8")
    assert "merge gap: 36KiB (auto: break-even of hand-gap at QD 8)" in text
    text = _simulate(files, capsys, "--merge-gap", "0")
    assert "merge gap: 0 (paper-literal: no gap merging)" in text


def test_compare_records_the_resolved_gap(files, capsys):
    args = ["compare", "--trace", str(files / "hand.trace"), "--device",
            str(files / "hand-gap.yaml"), "--layouts", "sparse,bundled", "--memcpy-gb-s", "1",
            "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["merge_gap_bytes"], out["merge_gap_auto"]) == (HAND_GAP, True)
    assert [r["params"]["merge_gap_bytes"] for r in out["rows"]] == [HAND_GAP, HAND_GAP]
    assert main(args + ["--merge-gap", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["merge_gap_bytes"], out["merge_gap_auto"]) == (0, False)


@pytest.mark.parametrize("command", ["simulate", "compare"])
def test_bad_merge_gap_is_one_line_exit_2(files, capsys, command):
    code = main([command, "--trace", str(files / "hand.trace"), "--device",
                 str(files / "hand-gap.yaml"), "--merge-gap", "fast"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--merge-gap" in err and "'fast' is not a merge gap" in err and err.count("\n") == 1


# ---- sweep spec ---------------------------------------------------------------------------

RATES = {"memcpy_bytes_per_s": 1e10, "compute_fixed_s_per_layer": 2e-5,
         "compute_s_per_neuron": 5e-9}


def _configs(folder, **changes):
    from flashsim.sweep.grid import expand, geometry_key
    from flashsim.sweep.spec import load_sweep

    sweep = load_sweep(write_yaml(folder, smoke_dict(**changes)))
    return sweep, expand(sweep, {geometry_key(g): RATES for g in sweep.geometries.values()})


def test_sweep_resolves_auto_per_device_and_queue_depth(files):
    sweep, runs = _configs(files, devices=[str(files / "hand-gap.yaml")])
    assert sweep.spec.merge_gap == "auto"  # the default
    # the hand device serves reads one after the other: the same break-even at QD 4 and 32
    assert {(c["merge_gap_bytes"], c["merge_gap_auto"]) for c in runs} == {(HAND_GAP, True)}
    local = {c["queue_depth"]: c["merge_gap_bytes"]
             for c in _configs(files, devices=[str(LOCAL)])[1]}
    assert local[4] > local[32] > 0


@pytest.mark.parametrize("value, gap", [("auto", None), ("8k", 8192), (0, 0), ("16KiB", 16384)])
def test_sweep_accepts_auto_or_a_size(files, value, gap):
    sweep, runs = _configs(files, devices=[str(files / "hand-gap.yaml")], merge_gap=value)
    want = HAND_GAP if gap is None else gap
    assert {c["merge_gap_bytes"] for c in runs} == {want}
    assert {c["merge_gap_auto"] for c in runs} == {gap is None}


def test_sweep_run_ids_follow_the_gap(files):
    auto = {c["run_id"] for c in _configs(files)[1]}
    zero = {c["run_id"] for c in _configs(files, merge_gap=0)[1]}
    assert auto.isdisjoint(zero)


@pytest.mark.parametrize("value", ["fast", "-4k", [8192]])
def test_sweep_rejects_junk_with_the_key(files, value):
    from flashsim.sweep.spec import load_sweep

    spec = write_yaml(files, smoke_dict(merge_gap=value))
    with pytest.raises(InputError) as info:
        load_sweep(spec)
    assert info.value.key == "merge_gap"
    assert "not a merge gap" in str(info.value) and str(spec) in str(info.value)
    assert "\n" not in str(info.value)


def test_sweep_cli_bad_gap_exits_2_and_writes_nothing(files, capsys):
    spec = write_yaml(files, smoke_dict(merge_gap="fast"))
    out = files / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "merge_gap: " in err and err.count("\n") == 0
    assert not out.exists()
