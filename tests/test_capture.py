"""capture_trace: bad inputs, what it records, determinism; the shipped reference traces."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("torch", reason="the train extra (torch) is installed in CI")

from flashsim.data import BUNDLED_MODEL_DIR, BUNDLED_PREDICTORS, REFERENCE_TRACE, TRAINING_TRACE  # noqa: E402
from flashsim.errors import InputError  # noqa: E402
from flashsim.model.checkpoint import file_sha256, load_checkpoint  # noqa: E402
from flashsim.model.opt import DenseFFN, OPTModel  # noqa: E402
from flashsim.model.tokenizer import load_tokenizer  # noqa: E402
from flashsim.trace.capture import capture_trace  # noqa: E402
from flashsim.trace.format import ActivationTrace  # noqa: E402
from opt_builders import build_random_opt, random_predictors  # noqa: E402

TEXT = ("The interpreter reads a line of input, evaluates it and prints the result. "
        "Modules can import other modules, and functions may be nested inside classes. ") * 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    f = build_random_opt(tmp_path_factory.mktemp("cap") / "m", fp16=True, tokenizer_text=TEXT,
                         max_pos=128)
    random_predictors(2, 64, 256, threshold=0.5).save(f / "predictors.safetensors")
    return f


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt_text="", n_tokens=4), "prompt is empty"),
    (dict(prompt_text="  \n", n_tokens=4), "prompt is empty"),
    (dict(prompt_text=TEXT, n_tokens=0, prompt_tokens=8), "cannot generate 0 tokens"),
    (dict(prompt_text=TEXT, n_tokens=-3, prompt_tokens=8), "cannot generate -3 tokens"),
    (dict(prompt_text=TEXT, n_tokens=4), "longer than the model's context"),
    (dict(prompt_text=TEXT, n_tokens=100, prompt_tokens=40), "passes the model's context"),
    (dict(prompt_text="short text", n_tokens=4, prompt_tokens=50), "prompt has only"),
    (dict(prompt_text=TEXT, n_tokens=4, prompt_tokens=8, top_p=1.5), "top_p"),
    (dict(prompt_text=TEXT, n_tokens=4, prompt_tokens=8, threshold=2.0), "threshold"),
])
def test_bad_input_is_one_line_input_error(folder, kwargs, message):
    with pytest.raises(InputError, match=message) as info:
        capture_trace(folder, **kwargs, quiet=True)
    assert "\n" not in str(info.value)


def test_missing_predictors(folder, tmp_path):
    with pytest.raises(InputError, match="predictor file does not exist"):
        capture_trace(folder, TEXT, 4, prompt_tokens=8, predictors=tmp_path / "none.safetensors")


def test_capture_records_what_the_sparse_run_did(folder):
    trace = capture_trace(folder, TEXT, 24, prompt_tokens=16, seed=5, quiet=True,
                          prompt_source="test text")
    ids = [2] + load_tokenizer(folder).encode(TEXT).ids[:15]
    assert trace.n_prompt_tokens == 16 and trace.n_tokens == 40
    assert trace.token_ids[:16].tolist() == ids
    assert trace.meta["synthetic"] is False and trace.meta["prompt_source"] == "test text"
    assert trace.meta["model_sha256"] == file_sha256(folder / "model.safetensors")
    assert trace.meta["sampling"] == "nucleus" and trace.meta["top_p"] == 0.9
    # replay the fed tokens densely: the truly active sets of a threshold-0 capture are the
    # dense run's, and the predicted sets are everything
    full = capture_trace(folder, TEXT, 24, prompt_tokens=16, seed=5, threshold=0.0, quiet=True)
    model = OPTModel.load(folder)
    dense = DenseFFN(model.ckpt, record=True)
    model.forward(full.token_ids, None, dense)
    for layer in range(2):
        assert np.array_equal(full.active[layer].to_mask(256), dense.records[layer].mask)
        assert full.predicted[layer].counts().tolist() == [256] * 40
    # with the real threshold the predictor dropped neurons, and the sparse run diverged
    frac = np.mean([np.mean(p.counts()) for p in trace.predicted]) / 256
    assert 0.05 < frac < 0.95


def test_capture_is_deterministic_per_seed(folder):
    a = capture_trace(folder, TEXT, 20, prompt_tokens=8, seed=1, quiet=True)
    b = capture_trace(folder, TEXT, 20, prompt_tokens=8, seed=1, quiet=True)
    c = capture_trace(folder, TEXT, 20, prompt_tokens=8, seed=2, quiet=True)
    g = capture_trace(folder, TEXT, 20, prompt_tokens=8, top_p=None, quiet=True)
    assert np.array_equal(a.token_ids, b.token_ids)
    assert all(np.array_equal(x.ids, y.ids) for x, y in zip(a.active, b.active))
    assert not np.array_equal(a.token_ids, c.token_ids)
    assert g.meta["sampling"] == "greedy"


# ---- the shipped reference traces -----------------------------------------------------------

@pytest.mark.parametrize("path", [REFERENCE_TRACE, TRAINING_TRACE], ids=["ref", "train"])
def test_shipped_traces_match_the_bundled_model(path):
    trace = ActivationTrace.load(path)
    ckpt = load_checkpoint(BUNDLED_MODEL_DIR)
    trace.check_geometry(ckpt.geometry)
    assert trace.geometry == ckpt.geometry
    assert trace.meta["model_sha256"] == ckpt.weights_sha256  # made from the current weights
    assert trace.meta["predictors_sha256"] == file_sha256(BUNDLED_PREDICTORS)
    assert trace.meta["synthetic"] is False and trace.predicted is not None
    assert trace.meta["sampling"] == "nucleus" and trace.meta["top_p"] == 0.9
    assert trace.token_ids.max() < ckpt.spec.vocab_size
    assert trace.n_tokens <= ckpt.spec.max_positions or "segments" in trace.meta


def test_reference_trace_is_the_papers_setting():
    trace = ActivationTrace.load(REFERENCE_TRACE)
    assert trace.n_prompt_tokens == 128 and trace.n_tokens == 128 + 256
    assert trace.meta["prompt_source"].endswith("heldout-prompts.txt")


def test_trace_capture_cli_end_to_end(folder, tmp_path, capsys):
    import json

    from flashsim.cli import main

    prompt = tmp_path / "prompt.txt"
    prompt.write_text(TEXT)
    out = tmp_path / "t.trace"
    args = ["trace", "capture", "--model", str(folder), "--prompt-file", str(prompt),
            "--prompt-tokens", "8", "--tokens", "6", "--out", str(out), "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_tokens"] == 14 and ActivationTrace.load(out).n_prompt_tokens == 8
    too_long = tmp_path / "long.trace"
    args[args.index("--prompt-tokens") + 1] = "40"
    args[args.index("--tokens") + 1] = "100"
    args[args.index("--out") + 1] = str(too_long)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "passes the model's context" in err
    assert not too_long.exists()


def test_shipped_predictors_fit_and_predict_the_bundled_model():
    """Trained for these weights, and on 512 held-out tokens they find >= 90% of active neurons
    while computing only a few percent of layers 1-3 (measured here, not read from the JSON)."""
    from flashsim.data import TEXT_DIR
    from flashsim.model.predictor import PredictorSet

    model = OPTModel.load()
    preds = PredictorSet.load(BUNDLED_PREDICTORS)
    preds.check_geometry(model.geometry, file=BUNDLED_PREDICTORS)
    assert preds.meta["model_sha256"] == model.ckpt.weights_sha256
    ids = load_tokenizer().encode((TEXT_DIR / "heldout-eval.txt").read_text()).ids[:512]
    dense = DenseFFN(model.ckpt, record=True)
    model.forward(ids, None, dense)
    for layer in range(model.spec.n_layers):
        rec = dense.records[layer]
        predicted = preds.predict_mask(layer, rec.resid)
        recall = (predicted & rec.mask).sum() / rec.mask.sum()
        assert recall >= 0.9, (layer, recall)
        if layer > 0:
            assert predicted.mean() < 0.06, (layer, predicted.mean())
