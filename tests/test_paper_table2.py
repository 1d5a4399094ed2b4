"""paper_table2 study: the weights the naive baseline reads add up to OPT-6.7B's real size."""

from __future__ import annotations

from flashsim.cost.paper_table2 import PAPER, non_ffn_bytes, table2_configs
from flashsim.trace.synthetic import OPT_6_7B_SYNTHETIC


def test_naive_reads_the_whole_opt_6_7b_model() -> None:
    # facebook/opt-6.7b has 6,658,473,984 parameters (sum over its published checkpoint);
    # flashsim's flash file holds the FFN weight rows, the study adds everything else.
    g = OPT_6_7B_SYNTHETIC
    ffn_weight_params = 2 * g.d_model * g.d_ffn * g.n_layers
    other_params = non_ffn_bytes(g.d_model, g.d_ffn, g.n_layers, 2) // 2
    assert ffn_weight_params + other_params == 6_658_473_984


def test_configs_follow_the_papers_read_settings() -> None:
    g = OPT_6_7B_SYNTHETIC
    configs = {row: rest for row, *rest in table2_configs(g.row_bytes)}
    assert list(configs) == list(PAPER)  # the paper's five rows, in its order
    # fp16 rows of 8 KiB read one per read; a bundle (up row + down column) is one 16 KiB read
    assert g.row_bytes == 8192
    assert configs["predictor"][1]["max_read_bytes"] == 8192
    assert configs["bundling"][1]["max_read_bytes"] == 16384
    # 32 reads in flight for the sparse rows; the dense rows read 1 MiB chunks
    assert {configs[r][2] for r in ("predictor", "windowing", "bundling")} == {32}
    assert configs["naive"][1]["chunk_bytes"] == 1 << 20
    # naive reads all weights outside the FFN, hybrid half, the sparse rows none
    assert [c[3] for c in configs.values()] == [1.0, 0.5, 0.0, 0.0, 0.0]
