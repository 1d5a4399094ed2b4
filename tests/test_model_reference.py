"""The numpy OPT against transformers' OPTForCausalLM (fp32): logits, KV-cache decoding, greedy."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch", reason="the train extra (torch) is installed in CI")
transformers = pytest.importorskip("transformers")

from flashsim.data import BUNDLED_MODEL_DIR, TEXT_DIR  # noqa: E402
from flashsim.model.opt import OPTModel  # noqa: E402
from flashsim.model.tokenizer import load_tokenizer  # noqa: E402
from opt_builders import build_random_opt  # noqa: E402

TOL = 1e-4


def reference_logits(folder, ids: np.ndarray) -> np.ndarray:
    model = transformers.OPTForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor(ids)[None]).logits[0].numpy()


def reference_greedy(folder, ids: np.ndarray, n: int) -> np.ndarray:
    model = transformers.OPTForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor(ids)[None], max_new_tokens=n, do_sample=False,
                             min_new_tokens=n, pad_token_id=1, eos_token_id=None)
    return out[0, len(ids):].numpy()


def numpy_greedy(model: OPTModel, ids: np.ndarray, n: int) -> np.ndarray:
    cache = model.new_cache(len(ids) + n)
    logits = model.forward(ids, cache)
    out = [int(logits[-1].argmax())]
    for _ in range(n - 1):
        out.append(int(model.forward([out[-1]], cache)[-1].argmax()))
    return np.asarray(out)


def incremental_logits(model: OPTModel, ids: np.ndarray, n_prefill: int) -> np.ndarray:
    cache = model.new_cache()
    parts = [model.forward(ids[:n_prefill], cache)]
    parts += [model.forward([t], cache) for t in ids[n_prefill:]]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def bundled_ids() -> np.ndarray:
    """~300 tokens of held-out text, BOS first, as the bundled model was trained."""
    model = OPTModel.load(BUNDLED_MODEL_DIR)
    text = (TEXT_DIR / "heldout-eval.txt").read_text()
    ids = load_tokenizer(BUNDLED_MODEL_DIR).encode(text).ids
    if ids[0] != model.spec.bos_token_id:
        ids = [model.spec.bos_token_id] + ids
    assert ids[1] != model.spec.bos_token_id
    return np.asarray(ids[:300], np.int64)


def test_bundled_model_logits_match_transformers(bundled_ids):
    model = OPTModel.load()
    assert model.spec.name == "opt-mini"
    ref = reference_logits(BUNDLED_MODEL_DIR, bundled_ids)
    ours = model.forward(bundled_ids)
    assert ours.shape == ref.shape == (300, model.spec.vocab_size)
    assert np.abs(ref).max() > 1.0  # real logits, not a degenerate all-zero comparison
    assert np.abs(ours - ref).max() < TOL
    inc = incremental_logits(model, bundled_ids, 100)
    assert np.abs(inc - ref).max() < TOL


def test_bundled_model_greedy_matches_transformers(bundled_ids):
    prompt = bundled_ids[:64]
    ref = reference_greedy(BUNDLED_MODEL_DIR, prompt, 24)
    assert (numpy_greedy(OPTModel.load(), prompt, 24) == ref).all()


@pytest.mark.parametrize("pre_ln, word_embed_dim", [(False, None), (True, 32), (False, 32)],
                         ids=["post-ln", "pre-ln-project", "post-ln-project"])
def test_random_opt_variants_match_transformers(tmp_path, pre_ln, word_embed_dim):
    """OPT-350m-style post-LN, and word_embed_proj_dim != hidden_size (project_in/out)."""
    folder = build_random_opt(tmp_path / "m", pre_ln=pre_ln, word_embed_dim=word_embed_dim)
    model = OPTModel.load(folder)
    assert model.spec.layer_norm_before is pre_ln
    assert (model.ckpt.project_in is not None) is (word_embed_dim is not None)
    ids = np.random.default_rng(1).integers(3, model.spec.vocab_size, 120)
    ref = reference_logits(folder, ids)
    assert np.abs(ref).max() > 1.0
    assert np.abs(model.forward(ids) - ref).max() < TOL
    assert np.abs(incremental_logits(model, ids, 40) - ref).max() < TOL
    assert (numpy_greedy(model, ids[:20], 16) == reference_greedy(folder, ids[:20], 16)).all()
