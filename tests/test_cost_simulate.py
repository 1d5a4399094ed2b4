"""Per-token cost on hand-checkable plans and a hand-computable device; the CLI around it."""

import json

import numpy as np
import pytest

from flashsim.cli import main
from flashsim.cost.compute import ComputeModel
from flashsim.cost.simulate import io_seconds, io_seconds_draws, simulate
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

G = ModelGeometry("hand-block", 2, 2048, 16, 2)  # 4 KiB rows
ROW = 4096
# one flash unit, no host time, 100 µs to first byte, 4096 MB/s: a 4 KiB read takes 101 µs,
# reads on the one unit run back to back whatever the queue depth
SERIAL = {"host_overhead_us": 0.0, "command_latency_us": 100.0, "n_units": 1,
          "unit_bandwidth_mb_s": 4096.0, "link_bandwidth_mb_s": 1e6, "stripe_bytes": 65536}
COMPUTE = ComputeModel(fixed_s_per_layer=1e-3, s_per_neuron=1e-6, source="fixed for the test")


def hand_trace():
    layers = [NeuronSets.from_lists([[0], [1, 5], [3]]), NeuronSets.from_lists([[0], [2], [7]])]
    return ActivationTrace(G, np.arange(3), 1, layers, layers, {"name": "hand"})


@pytest.mark.parametrize("engine", ["fast", "des"])
@pytest.mark.parametrize("qd", [1, 32])
def test_sparse_token_costs_by_hand(engine, qd):
    plan = make_layout("sparse").plan(hand_trace())
    frame, summary = simulate(plan, SERIAL, qd, engine, memcpy_bytes_per_s=1e9,
                              compute_model=COMPUTE)
    # token 1: layer 0 reads 4 rows, layer 1 two rows; token 2: 2 + 2 rows
    assert frame["reads"].tolist() == [6, 4]
    assert frame["io_ms"].to_numpy() == pytest.approx([6 * 0.101, 4 * 0.101])
    # every loaded neuron inserted: (2 + 1) and (1 + 1) rows of 8 KiB at 1 GB/s
    assert frame["mem_ms"].to_numpy() == pytest.approx([3 * 8192 / 1e6, 2 * 8192 / 1e6])
    assert frame["compute_ms"].to_numpy() == pytest.approx([2 + 3e-3, 2 + 2e-3])
    assert frame["total_ms"].to_numpy() == pytest.approx(
        (frame["io_ms"] + frame["mem_ms"] + frame["compute_ms"]).to_numpy())
    assert summary["bytes_per_token"] == 5 * ROW
    assert summary["reads_per_token"] == 5
    assert summary["mean_read_bytes"] == ROW
    assert summary["throughput_mb_s"] == pytest.approx(10 * ROW / (10 * 101e-6) / 1e6)
    assert summary["io_ms_p50"] == pytest.approx(5 * 0.101)
    assert summary["read_amplification"] == 1.0


def test_draws_repeat_the_plan_each_with_its_own_spread():
    plan = make_layout("sparse").plan(hand_trace())
    # without spreads every pass is the same plan on the same device: identical times
    same = io_seconds_draws(plan, SERIAL, 1, 3)
    assert same.shape == (3, plan.n_tokens, plan.n_layers)
    assert np.all(same == same[0]) and same[0] == pytest.approx(io_seconds(plan, SERIAL, 1))
    spread = {**SERIAL, "command_latency_spread": 1.0, "link_transfer_spread": 0.5}
    draws = io_seconds_draws(plan, spread, 1, 3)
    assert draws[0] == pytest.approx(io_seconds(plan, spread, 1))  # pass 0 is the plain run
    assert not np.allclose(draws[1], draws[0]) and not np.allclose(draws[2], draws[1])


def test_bundled_costs_half_the_command_latency_of_sparse():
    trace = hand_trace()
    results = {name: simulate(make_layout(name).plan(trace), SERIAL, 1, memcpy_bytes_per_s=1e9,
                              compute_model=COMPUTE)[0]
               for name in ("sparse", "bundled")}
    # same bytes, half the reads: 3 reads of 8 KiB (102 µs each) vs 6 of 4 KiB for token 1
    assert results["bundled"]["io_ms"].tolist() == pytest.approx([3 * 0.102, 2 * 0.102])
    assert results["bundled"]["bytes"].tolist() == results["sparse"]["bytes"].tolist()


def test_windowed_computes_every_resident_row():
    plan = make_layout("windowed", window=3).plan(hand_trace())
    frame, _ = simulate(plan, SERIAL, 8, memcpy_bytes_per_s=1e9, compute_model=COMPUTE)
    # after token 2, layer 0 holds {0, 1, 5, 3}, layer 1 holds {0, 2, 7}
    assert plan.computed_neurons[-1].tolist() == [4, 3]
    assert frame["compute_ms"].iloc[-1] == pytest.approx(2 + 7e-3)


# ---- CLI ----------------------------------------------------------------------------------

PROFILE = """name: hand-serial
description: test fixture, not a measured device
points:
  - {chunk_bytes: 4k, queue_depth: 1, throughput_mb_s: 40, source: assumption}
  - {chunk_bytes: 4k, queue_depth: 32, throughput_mb_s: 40, source: assumption}
  - {chunk_bytes: 1m, queue_depth: 1, throughput_mb_s: 3000, source: assumption}
  - {chunk_bytes: 1m, queue_depth: 32, throughput_mb_s: 3000, source: assumption}
params: {host_overhead_us: 0, command_latency_us: 100, n_units: 1, unit_bandwidth_mb_s: 4096,
         link_bandwidth_mb_s: 1000000, stripe_bytes: 65536}
"""


@pytest.fixture
def files(tmp_path):
    hand_trace().save(tmp_path / "hand.trace")
    (tmp_path / "dev.yaml").write_text(PROFILE)
    return tmp_path


def test_simulate_cli_json(files, capsys):
    code = main(["simulate", "--trace", str(files / "hand.trace"), "--device",
                 str(files / "dev.yaml"), "--layout", "sparse", "--qd", "1", "--json",
                 "--memcpy-gb-s", "1", "--merge-gap", "0"])  # paper-literal reads, by hand
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("io_ms_p50", "io_ms_p99", "bytes_per_token", "reads_per_token", "mem_ms_p50",
                "compute_ms_p50", "total_ms_p50", "total_ms_p99", "throughput_mb_s",
                "mean_read_bytes", "dram_resident_bytes", "read_amplification"):
        assert key in out
    assert out["reads_per_token"] == 5
    assert out["io_ms_p50"] == pytest.approx(0.505)
    assert [t["reads"] for t in out["tokens"]] == [6, 4]


def test_compare_cli_lists_every_layout_and_plots(files, capsys):
    fig = files / "cmp.png"
    code = main(["compare", "--trace", str(files / "hand.trace"), "--train-trace",
                 str(files / "hand.trace"), "--device", str(files / "dev.yaml"), "--json",
                 "--plot", str(fig), "--memcpy-gb-s", "1"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["layout"] for r in rows][:3] == ["naive", "hybrid", "sparse"]
    naive = rows[0]
    assert naive["bytes_per_token"] == G.ffn_bytes
    assert fig.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra, needle", [
    (["--layout", "nope"], "unknown layout"),
    (["--window", "0"], "window"),
    (["--window", "-2"], "window"),
    (["--device", "/nonexistent/dev.yaml"], "does not exist"),
    (["--trace", "/nonexistent/x.trace"], "does not exist"),
    (["--qd", "0"], "queue depth"),
])
def test_simulate_cli_bad_input_is_one_line_exit_2(files, capsys, extra, needle):
    args = ["simulate", "--trace", str(files / "hand.trace"), "--device",
            str(files / "dev.yaml")]
    code = main(args + extra)
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1
