"""flashsim advise: the search ranks a clearly best configuration first, refuses a budget
nothing fits, keeps a non-dominated front, and agrees with `simulate` row by row."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from flashsim.advise.advise import advise_layouts, pareto_mask, regap
from flashsim.advise.families import Candidate, SearchContext, candidates, register_family
from flashsim.cli import main
from flashsim.cost.compute import ComputeModel
from flashsim.cost.memory import MemoryModel
from flashsim.cost.simulate import simulate
from flashsim.device.profile import DeviceParams
from flashsim.errors import InputError
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

G = ModelGeometry("hand-advise", 2, 1024, 64, 2)  # 2 KiB rows: 4 KiB bundled records
# bytes are all that cost: one read costs nothing more than its transfer, 8 units in parallel
BYTES_BOUND = DeviceParams(host_overhead_us=0.0, command_latency_us=0.0, n_units=8,
                           unit_bandwidth_mb_s=50.0, link_bandwidth_mb_s=1e6, stripe_bytes=4096)
NO_COST = {"memory": "none", "compute": "none"}


def hand_trace(seed: int = 0, n_tokens: int = 48, n_prompt: int = 4) -> ActivationTrace:
    """Tokens drawn from a few recurring neuron groups, so a window saves most reads."""
    rng = np.random.default_rng(seed)
    groups = [rng.choice(64, 10, replace=False) for _ in range(3)]
    sets = [sorted(set(groups[rng.integers(3)].tolist()) | {int(rng.integers(64))})
            for _ in range(n_tokens)]
    layer = NeuronSets.from_lists(sets)
    return ActivationTrace(G, np.arange(n_tokens), n_prompt, [layer, layer], [layer, layer],
                           {"name": "hand-advise"})


def test_bytes_bound_device_ranks_the_widest_window_at_the_deepest_queue_first():
    trace = hand_trace()
    advice = advise_layouts(trace, BYTES_BOUND, 1 << 30, qds=[1, 8], windows=[1, 4],
                            merge_gaps=["0"], layouts=["naive", "bundled", "windowed+bundled"],
                            **NO_COST)
    best = advice.best
    assert (best["config"], best["queue_depth"]) == ("windowed+bundled k=4", 8)
    assert advice.info["n_configs"] == 4 * 2  # naive, bundled, 2 windows; × 2 QDs
    by_config = advice.distinct().set_index("config")
    assert by_config.loc["windowed+bundled k=4", "mb_per_token"] < \
        by_config.loc["bundled", "mb_per_token"] < by_config.loc["naive", "mb_per_token"]
    assert list(advice.ranked["rank"]) == list(range(1, len(advice.ranked) + 1))
    assert advice.ranked["total_ms"].is_monotonic_increasing


def test_budget_excludes_what_does_not_fit_and_the_front_is_non_dominated():
    trace = hand_trace(1)
    full = advise_layouts(trace, BYTES_BOUND, 1 << 30, qds=[1, 4], windows=[1, 2, 4],
                          merge_gaps=["0", "16k"], layouts=["bundled", "windowed+bundled"],
                          **NO_COST)
    budget = int(np.median(full.rows["dram_bytes"]))
    cut = advise_layouts(trace, BYTES_BOUND, budget, qds=[1, 4], windows=[1, 2, 4],
                         merge_gaps=["0", "16k"], layouts=["bundled", "windowed+bundled"],
                         **NO_COST)
    assert (cut.ranked["dram_bytes"] <= budget).all()
    assert cut.best["total_ms"] >= full.best["total_ms"]
    assert cut.rows["budgeted"].any()  # the largest window, shrunk to the budget
    rows, front = cut.rows, cut.front
    for _, f in front.iterrows():
        dominated = ((rows["dram_bytes"] <= f["dram_bytes"]) & (rows["total_ms"] <= f["total_ms"])
                     & ((rows["dram_bytes"] < f["dram_bytes"]) | (rows["total_ms"] < f["total_ms"])))
        assert not dominated.any()
    off = rows[~rows["pareto"]]
    for _, r in off.iterrows():  # every other configuration is matched or beaten by the front
        assert ((front["dram_bytes"] <= r["dram_bytes"]) & (front["total_ms"] <= r["total_ms"])).any()


def test_pareto_mask_by_hand():
    x = np.array([1, 2, 2, 3, 4, 1])
    y = np.array([5, 3, 4, 3, 1, 6])
    assert pareto_mask(x, y).tolist() == [True, True, False, False, True, False]


def test_budget_below_every_layout_is_one_line_exit_2(capsys):
    code = main(["advise", "--device", "m1max-paper", "--dram-budget", "1k",
                 "--layouts", "naive,bundled", "--windows", "1", "--qd", "1",
                 "--merge-gaps", "0", "--io-only"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--dram-budget" in err and "below what any layout needs" in err
    with pytest.raises(InputError, match="dram_budget_bytes"):
        advise_layouts(hand_trace(), BYTES_BOUND, 100, qds=[1], windows=[1], merge_gaps=["0"],
                       layouts=["bundled"], **NO_COST)


@pytest.mark.parametrize("kwargs, key", [({"qds": [0]}, "qds"), ({"windows": []}, "windows"),
                                         ({"merge_gaps": ["soon"]}, "merge_gaps"),
                                         ({"layouts": ["tiled"]}, "layouts"),
                                         ({"compute": "guess"}, "compute")])
def test_bad_search_settings_name_their_key(kwargs, key):
    args = {"qds": [1], "windows": [1], "merge_gaps": ["0"], "layouts": ["bundled"], **NO_COST}
    with pytest.raises(InputError, match=key):
        advise_layouts(hand_trace(), BYTES_BOUND, 1 << 30, **{**args, **kwargs})


def test_rows_agree_with_simulate_and_regap_with_planning_again():
    trace = hand_trace(2)
    memory, compute = MemoryModel(s_per_call=2e-5, s_per_neuron=1e-6), ComputeModel(1e-4, 1e-7)
    advice = advise_layouts(trace, BYTES_BOUND, 1 << 30, qds=[4], windows=[2],
                            merge_gaps=["8k"], layouts=["hybrid", "windowed+bundled"],
                            memory=memory, compute=compute, memcpy_bytes_per_s=1e10)
    for row in advice.rows.to_dict(orient="records"):
        p = advice.planned_of(row)
        frame, summary = simulate(p.plan, BYTES_BOUND, 4, memory_model=memory,
                                  compute_model=compute, memcpy_bytes_per_s=1e10)
        for col in ("io_ms", "mem_ms", "compute_ms", "total_ms"):
            assert row[col] == pytest.approx(summary[f"{col}_mean"], rel=1e-9), (row["config"], col)
    for name in ("windowed+bundled", "coactivation-friend", "naive"):
        layout = make_layout(name, train_trace=trace) if "co" in name else make_layout(name)
        wide = copy.copy(layout)
        wide.merge_gap_bytes = 8192
        again = make_layout(name, merge_gap_bytes=8192, **({"train_trace": trace}
                                                            if "co" in name else {}))
        a, b = regap(layout.plan(trace), wide), again.plan(trace)
        assert np.array_equal(a.batch_ptr, b.batch_ptr) and np.array_equal(a.offset_bytes,
                                                                            b.offset_bytes)
        assert np.array_equal(a.length_bytes, b.length_bytes) and a.params == b.params


def test_a_registered_family_joins_the_search():
    def fixed(ctx: SearchContext) -> list[Candidate]:
        return [Candidate("sparse-8k", "sparse 8k blocks",
                          lambda **common: make_layout("sparse", **{**common,
                                                                    "block_bytes": 8192}))]
    register_family("test-sparse-8k", fixed)
    try:
        ctx = SearchContext(G, 1 << 30)
        assert [c.label for c in candidates(ctx, ["test-sparse-8k"])] == ["sparse 8k blocks"]
        advice = advise_layouts(hand_trace(), BYTES_BOUND, 1 << 30, qds=[1], windows=[1],
                                merge_gaps=["0"], layouts=["bundled", "test-sparse-8k"],
                                **NO_COST)
        assert set(advice.rows["config"]) == {"bundled", "sparse 8k blocks"}
    finally:
        from flashsim.advise import families
        families.FAMILIES.pop("test-sparse-8k")


def test_cli_json_table_and_plot(tmp_path, capsys):
    fig = tmp_path / "front.png"
    args = ["advise", "--device", "m1max-paper", "--dram-budget", "3MiB",
            "--layouts", "naive,bundled,windowed+bundled", "--windows", "1,4", "--qd", "1,8",
            "--merge-gaps", "0,auto", "--io-only", "--top", "3"]
    assert main([*args, "--json", "--plot", str(fig)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert fig.stat().st_size > 0 and payload["plot"] == str(fig)
    assert len(payload["ranked"]) == 3 and payload["ranked"][0]["rank"] == 1
    assert payload["front"] and payload["n_configs"] >= payload["n_within_budget"] > 0
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "pick:" in text and "Pareto front" in text


@pytest.mark.disk
def test_validate_reads_the_top_three_on_this_disk(tmp_path, capsys):
    code = main(["advise", "--device", "local-virtio", "--dram-budget",
                 "3MiB", "--layouts", "bundled,windowed+bundled", "--windows", "2,4",
                 "--qd", "4", "--merge-gaps", "0", "--io-only", "--validate", "--store",
                 str(tmp_path / "stores"), "--build-stores", "--validate-tokens", "3", "--reps", "1", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["validation"]
    assert [r["rank"] for r in rows] == sorted(r["rank"] for r in rows) and len(rows) == 3
    assert all(r["measured_io_ms"] > 0 and r["predicted_io_ms"] > 0 for r in rows)
    assert min(r["vs_best_measured_pct"] for r in rows) == 0.0
    # bundled and windowed+bundled read one placement: one store built for all three
    assert len(list((tmp_path / "stores").glob("*.ffn"))) == 1
