"""The Python API and the CLI share their defaults: the same call gives the same numbers.

Both run in this process with the host's rates fixed (the memcpy rate by argument, the
compute model in place of the one timed on this machine), so only the defaults can differ.
"""

import json

import pytest

import flashsim
from flashsim.cli import run_json
from flashsim.cost.compute import ComputeModel

MEMCPY_GB_S = 10.0


@pytest.fixture(autouse=True)
def fixed_compute(monkeypatch):
    """The compute model both sides get by default, fixed: timing it takes seconds."""
    model = ComputeModel(1e-5, 1e-8, "fixed")
    monkeypatch.setattr("flashsim.cost.simulate.calibrate_compute", lambda geometry: model)


@pytest.mark.parametrize("layout", ["sparse", "windowed+bundled"])
def test_simulate_layout_and_the_cli_agree_to_the_last_digit(layout):
    _, summary, _ = flashsim.simulate_layout(layout, "opt-mini-ref", "m1max-paper", 32,
                                             memcpy_bytes_per_s=MEMCPY_GB_S * 1e9)
    cli = json.loads(run_json(["simulate", "--device", "m1max-paper", "--layout", layout,
                               "--memcpy-gb-s", str(MEMCPY_GB_S)]))
    assert summary["merge_gap_auto"] is True and summary["merge_gap_bytes"] > 0
    for key, value in summary.items():
        if isinstance(value, (int, float, str, bool)):
            assert cli[key] == value, key
    assert cli["merge_gap_break_even"] == summary["merge_gap_break_even"]


def test_the_api_default_merge_gap_is_the_cli_default():
    from flashsim.cli import build_parser

    args = build_parser().parse_args(["simulate", "--device", "m1max-paper"])
    assert args.merge_gap == flashsim.DEFAULT_MERGE_GAP == "auto"


def test_an_explicit_gap_in_bytes_is_kept():
    _, summary, plan = flashsim.simulate_layout("sparse", "opt-mini-ref", "m1max-paper", 32,
                                                memcpy_bytes_per_s=1e10, merge_gap_bytes=0)
    assert summary["merge_gap_bytes"] == 0 and summary["merge_gap_auto"] is False
    assert plan.params["merge_gap_bytes"] == 0
