"""`flashsim trace ...`: --json values on a hand trace, one-line errors with exit 2."""

import json

import numpy as np
import pytest

from flashsim.cli import main
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.trace.format import ActivationTrace

GEOM = ModelGeometry("hand", n_layers=2, d_model=4, d_ffn=8, dtype_bytes=2)


@pytest.fixture
def hand_trace(tmp_path):
    active = [NeuronSets.from_lists([[0, 1], [1, 2], [0, 2, 3], [3]]),
              NeuronSets.from_lists([[5], [5], [5], [5]])]
    predicted = [NeuronSets.from_lists([[0, 1, 4], [1, 2, 4], [0, 3, 4], [3, 4]]),
                 NeuronSets.from_lists([[5], [5], [5], [5]])]
    p = tmp_path / "hand.trace"
    ActivationTrace(GEOM, np.arange(4), 1, active, predicted, {"source": "hand"}).save(p)
    return p


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_json_keys_and_values(capsys, hand_trace):
    code, out, err = run(capsys, ["trace", "stats", str(hand_trace), "--json"])
    assert code == 0 and err == ""
    st = json.loads(out)
    assert st["sparsity"] == pytest.approx([0.75, 0.875])
    assert st["predicted_sparsity"] == pytest.approx([1 - 1 / 3, 0.875])
    assert len(st["window_incremental_fraction"]) == 8 and st["window_k"] == list(range(1, 9))
    # predicted set, layer 0, k=1: loads 1, 2, 0 neurons on tokens 1..3 -> 1 of 8 per token
    assert st["window_incremental_fraction_per_layer"][0][0] == pytest.approx(1 / 8)
    assert st["predictor"]["recall"] == pytest.approx([5 / 6, 1.0])
    assert st["coactivation"]["set"] == "predicted"


def test_stats_active_and_human_table(capsys, hand_trace):
    code, out, _ = run(capsys, ["trace", "stats", str(hand_trace), "--which", "active", "--json",
                                "--no-coactivation"])
    st = json.loads(out)
    assert code == 0 and st["which"] == "active" and st["coactivation"] is None
    assert st["window_incremental_fraction"][:2] == pytest.approx([1 / 16, 1 / 24])
    code, out, _ = run(capsys, ["trace", "stats", str(hand_trace)])
    assert code == 0 and "sparsity%" in out and "75.00" in out


def test_info_json(capsys, hand_trace):
    code, out, _ = run(capsys, ["trace", "info", str(hand_trace), "--json"])
    info = json.loads(out)
    assert code == 0 and info["n_tokens"] == 4 and info["n_prompt_tokens"] == 1
    assert info["geometry"]["d_ffn"] == 8 and info["synthetic"] is False
    assert info["meta"] == {"source": "hand"}


def _one_line_error(code, out, err):
    assert code == 2 and out == ""
    assert err.startswith("flashsim: error:") and err.count("\n") == 1


def test_stats_errors_are_one_line(capsys, tmp_path, hand_trace):
    _one_line_error(*run(capsys, ["trace", "stats", str(tmp_path / "missing.trace")]))
    junk = tmp_path / "junk.trace"
    junk.write_bytes(b"not a zip")
    _one_line_error(*run(capsys, ["trace", "stats", str(junk)]))
    code, out, err = run(capsys, ["trace", "stats", str(hand_trace), "--hot-fraction", "0"])
    _one_line_error(code, out, err)
    assert "--hot-fraction" in err


def test_capture_bad_input_exits_2_and_writes_nothing(capsys, tmp_path):
    out_path = tmp_path / "t.trace"
    code, out, err = run(capsys, ["trace", "capture", "--prompt-file", str(tmp_path / "no.txt"),
                                  "--tokens", "4", "--out", str(out_path)])
    _one_line_error(code, out, err)
    assert "no.txt" in err and "--prompt-file" in err
    prompt = tmp_path / "p.txt"
    prompt.write_text("Some held-out prose for the prompt.")
    code, out, err = run(capsys, ["trace", "capture", "--prompt-file", str(prompt),
                                  "--tokens", "0", "--out", str(out_path)])
    _one_line_error(code, out, err)
    assert "--tokens" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    _one_line_error(*run(capsys, ["trace", "capture", "--prompt-file", str(empty),
                                  "--tokens", "3", "--out", str(out_path)]))
    _one_line_error(*run(capsys, ["trace", "capture", "--prompt-file", str(prompt), "--tokens",
                                  "3", "--out", str(tmp_path / "nodir" / "t.trace")]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "p.txt"]
    assert main(["trace", "capture", "--prompt-file", str(prompt), "--tokens", "many",
                 "--out", str(out_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_capture_with_the_bundled_model(capsys, tmp_path):
    from flashsim.data import TEXT_DIR

    out_path = tmp_path / "short.trace"
    code, out, err = run(capsys, ["trace", "capture", "--prompt-file",
                                  str(TEXT_DIR / "heldout-prompts.txt"), "--prompt-tokens", "16",
                                  "--tokens", "8", "--out", str(out_path), "--json"])
    assert code == 0, err
    payload = json.loads(out)
    assert payload["n_tokens"] == 24 and payload["n_prompt_tokens"] == 16
    assert payload["n_generated"] == 8 and payload["model"] == "opt-mini"
    assert 0 < payload["mean_sparsity"] < 1
    t = ActivationTrace.load(out_path)
    assert not t.is_synthetic and t.predicted is not None and t.n_tokens == 24
    # the same seed gives the same trace
    again = tmp_path / "again.trace"
    assert main(["trace", "capture", "--prompt-file", str(TEXT_DIR / "heldout-prompts.txt"),
                 "--prompt-tokens", "16", "--tokens", "8", "--out", str(again), "--json"]) == 0
    assert ActivationTrace.load(again).token_ids.tolist() == t.token_ids.tolist()
    assert t.meta["prompt_source"] == "heldout-prompts.txt"
