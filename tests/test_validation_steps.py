"""Validation's steps without the disk: the options and their errors, the schedule of
reads, the row statistics by hand, the CLI's engine flags."""

from __future__ import annotations

import re

import numpy as np
import pytest

from flashsim.cli import build_parser
from flashsim.errors import InputError
from flashsim.validation.rows import row_stats
from flashsim.validation.schedule import schedule, token_blocks
from flashsim.validation.spec import CALIBRATION_PIECES, spec_from_options

PROFILE = "flashsim/data/devices/m1max-paper.yaml"


def test_row_stats_by_hand():
    measured = np.array([[1.0, 2.0, 4.0, 10.0],
                         [1.2, 2.0, 4.0, 10.0],
                         [0.8, 2.2, 4.0, 10.0]]) * 1e-3
    predicted = np.array([1.1, 2.0, 5.0, 10.0]) * 1e-3
    row = row_stats(measured, predicted)
    # median measured per token: 1, 2, 4, 10 ms → errors 10, 0, 25, 0 % → median 5 %
    assert row["error_p50_pct"] == pytest.approx(5.0)
    assert row["measured_io_ms_p50"] == pytest.approx(3.0)
    assert row["predicted_io_ms_p50"] == pytest.approx(3.5)
    assert row["ratio"] == pytest.approx(3.5 / 3.0)
    # leave-one-out: token 0 → |1-1|/1, |1.2-0.9|/0.9, |0.8-1.1|/1.1; token 1 → 0, 0, 0.1/2;
    # tokens 2, 3 → 0. Median of the 12 deviations is 0.
    assert row["noise_p50_pct"] == pytest.approx(0.0)
    m99 = np.percentile([1, 2, 4, 10], 99)
    p99 = np.percentile([1.1, 2, 5, 10], 99)
    assert row["error_p99_pct"] == pytest.approx(abs(p99 - m99) / m99 * 100)
    assert row_stats(measured[:1], predicted)["noise_p50_pct"] is None


def test_row_stats_takes_the_median_of_the_simulator_draws():
    measured = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]]) * 1e-3
    draws = np.array([[1.0, 3.0, 4.0], [2.0, 2.0, 4.0], [1.2, 2.2, 8.0]]) * 1e-3
    row = row_stats(measured, draws)
    # per-token medians of the draws: 1.2, 2.2, 4 ms → errors 20, 10, 0 % → median 10 %
    assert row["error_p50_pct"] == pytest.approx(10.0)
    assert row["predicted_io_ms_p50"] == pytest.approx(2.2)
    medians = row_stats(measured, np.median(draws, axis=0))
    per_token = {k: v for k, v in row.items() if not k.startswith(("error_mean", "error_p99_all"))}
    assert per_token == {k: v for k, v in medians.items() if k in per_token}
    # the mean and the p99 over every draw's tokens: 27.4 / 9 ms vs 7 / 3 ms; p99 of all nine
    assert row["error_mean_pct"] == pytest.approx((27.4 / 9 - 7 / 3) / (7 / 3) * 100)
    assert row["error_p99_all_pct"] == pytest.approx(
        (np.percentile(draws, 99) - 4e-3) / 4e-3 * 100)


@pytest.mark.parametrize("option, value, message", [
    ("reps", 0, "0 repetitions"),
    ("reps", True, "True repetitions"),
    ("calibration_pieces", 0, "0 calibration pieces"),
    ("calibration_pieces", True, "True calibration pieces"),
    ("qds", [1, 0], "queue depths [1, 0]"),
    ("qds", [True], "queue depths [True]"),
    ("qds", [], "queue depths"),
    ("layouts", [], "no layouts"),
    ("calibrate_on", "disk", "'disk'"),
    ("model_engine", "numba", "'numba'"),
    ("reader_engine", "io_uring", "'io_uring'"),
    ("calibration_duration_s", 0.0, "greater than 0"),
    ("tokens", 0, "greater than or equal to 1"),
    ("calibration_batch_reads", [4, 0], "batches of 0 reads"),
    ("calibration_bytes", "lots", "lots"),
])
def test_a_bad_option_is_an_input_error_naming_it(option, value, message):
    options = {"layouts": ["naive"], "qds": [1], "store": "s", "profile": PROFILE,
               option: value}
    with pytest.raises(InputError, match=re.escape(message)) as err:
        spec_from_options(options.pop("layouts"), options.pop("qds"), options)
    assert err.value.key == option


def test_spec_defaults_and_the_profile_rule():
    spec = spec_from_options(["naive"], [8, 1], {"store": "s", "calibrate": True,
                                                 "calibration_bytes": "64m"})
    assert spec.qds == [8, 1] and spec.profile is None and spec.reps == 3
    assert spec.calibration_bytes == 64 << 20 and spec.calibration_pieces == CALIBRATION_PIECES
    assert spec.calibration_batch_reads == (1, 4, 16, 64)
    assert (spec.model_engine, spec.reader_engine) == ("fast", "auto")
    with pytest.raises(InputError, match="no device profile") as err:
        spec_from_options(["naive"], [1], {"store": "s"})
    assert err.value.key == "profile"
    with pytest.raises(TypeError, match="engine"):  # the device model is `model_engine` now
        spec_from_options(["naive"], [1], {"store": "s", "profile": PROFILE, "engine": "des"})


def test_schedule_interleaves_rows_and_deals_out_calibration():
    keys = [(0, 1), (0, 8), (1, 1)]
    blocks = token_blocks(10)
    assert [len(b) for b in blocks] == [2, 2, 1, 1, 1, 1, 1, 1]
    assert token_blocks(3) == [range(0, 1), range(1, 2), range(2, 3)]
    slots = schedule(keys, 10, reps=2)
    assert len(slots) == 2 * 8 * 3
    for rep in (0, 1):
        mine = [s for s in slots if s.rep == rep]
        for key in keys:  # every token of every row once per repetition
            assert sorted(t for s in mine if s.key == key for t in s.tokens) == list(range(10))
        # blocks in order, all rows of a block before the next; the row order rotates
        assert [s.tokens for s in mine] == [b for b in blocks for _ in keys]
        assert [mine[3 * b].key for b in range(8)] == [keys[(rep + b) % 3] for b in range(8)]
        assert [s.calibration_part for s in mine] == [(j, 24) for j in range(24)]


def test_engine_is_a_hidden_alias_of_model_engine():
    parser = build_parser()
    base = ["validate", "--store", "s", "--device", PROFILE]
    assert parser.parse_args(base).model_engine == "fast"
    assert parser.parse_args(base + ["--engine", "des"]).model_engine == "des"
    assert parser.parse_args(base + ["--model-engine", "des"]).model_engine == "des"
