"""The sparse FFN path, the weight source interface, predictors and sampling."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("torch", reason="the train extra (torch) is installed in CI")

from flashsim.errors import InputError  # noqa: E402
from flashsim.model.opt import DenseFFN, OPTModel  # noqa: E402
from flashsim.model.predictor import PredictorSet  # noqa: E402
from flashsim.model.sampling import greedy, sample_top_p  # noqa: E402
from flashsim.model.sparse import SparseFFN  # noqa: E402
from flashsim.model.weights import DRAMWeightSource, FFNWeightSource  # noqa: E402
from opt_builders import build_random_opt, random_predictors  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return OPTModel.load(build_random_opt(tmp_path_factory.mktemp("sp") / "m", fp16=True))


@pytest.fixture(scope="module")
def preds(model):
    s = model.spec
    return random_predictors(s.n_layers, s.d_model, s.d_ffn)


IDS = np.random.default_rng(3).integers(3, 300, 60)


def decode(model, ffn, ids):
    cache = model.new_cache(len(ids))
    return np.concatenate([model.forward([t], cache, ffn) for t in ids])


class CountingSource:
    """A source that records which ids were asked for (and serves DRAM rows)."""

    def __init__(self, inner):
        self.inner, self.asked = inner, []

    def rows(self, layer, neuron_ids):
        self.asked.append((layer, np.array(neuron_ids)))
        return self.inner.rows(layer, neuron_ids)

    def fc2_bias(self, layer):
        return self.inner.fc2_bias(layer)


def test_threshold_zero_is_dense(model, preds):
    dense = decode(model, None, IDS)
    src = DRAMWeightSource.from_checkpoint(model.ckpt)
    sparse = decode(model, SparseFFN(preds, src, threshold=0.0), IDS)
    assert np.abs(dense).max() > 1.0
    assert np.abs(sparse - dense).max() < 1e-5
    batched = model.forward(IDS, None, SparseFFN(preds, src, threshold=0.0))
    assert np.abs(batched - dense).max() < 1e-4


def test_sparse_uses_exactly_the_predicted_neurons(model, preds):
    src = CountingSource(DRAMWeightSource.from_checkpoint(model.ckpt))
    assert isinstance(src, FFNWeightSource)
    ffn = SparseFFN(preds, src, record=True)
    cache = model.new_cache(4)
    for t in IDS[:4]:
        model.forward([t], cache, ffn)
    # the last token's requests are the last n_layers entries, and they are its predicted sets
    for layer, ids in src.asked[-model.spec.n_layers:]:
        mask = ffn.records[layer].mask[0]
        assert 0 < len(ids) < model.spec.d_ffn
        assert np.array_equal(ids, np.flatnonzero(mask))
        # and the predicted set is what the predictor formula says (sigmoid >= 0.5 <=> logit >= 0)
        z = ffn.records[layer].resid[0]
        z = (z - z.mean()) / np.sqrt(z.var() + 1e-5)
        p = preds.layers[layer]
        assert np.array_equal(mask, (p.up_w @ (p.down_w @ z + p.down_b) + p.up_b) >= 0)


def test_sparse_ffn_equals_direct_arrays(model, preds):
    """One FFN call through the DRAM source = fc2[:, ids] relu(fc1[ids] x + b1[ids]) + b2."""
    rng = np.random.default_rng(0)
    d = model.spec.d_model
    resid = rng.normal(size=(1, d)).astype(np.float32)
    x = rng.normal(size=(1, d)).astype(np.float32)
    ffn = SparseFFN(preds, DRAMWeightSource.from_checkpoint(model.ckpt), record=True)
    out = ffn(1, resid, x)
    ids = np.flatnonzero(ffn.records[1].mask[0])
    from safetensors.numpy import load_file
    raw = load_file(str(model.ckpt.path / "model.safetensors"))
    fc1 = raw["model.decoder.layers.1.fc1.weight"].astype(np.float64)
    b1 = raw["model.decoder.layers.1.fc1.bias"].astype(np.float64)
    fc2 = raw["model.decoder.layers.1.fc2.weight"].astype(np.float64)
    b2 = raw["model.decoder.layers.1.fc2.bias"].astype(np.float64)
    expected = fc2[:, ids] @ np.maximum(fc1[ids] @ x[0] + b1[ids], 0) + b2
    assert np.abs(out[0] - expected).max() < 1e-4
    # and differs from the dense FFN (neurons outside the predicted set were active)
    dense = DenseFFN(model.ckpt)(1, resid, x)
    assert np.abs(dense - out).max() > 1e-3


def test_batched_sparse_equals_token_by_token(model, preds):
    src = DRAMWeightSource.from_checkpoint(model.ckpt)
    step = decode(model, SparseFFN(preds, src), IDS)
    batched = model.forward(IDS, None, SparseFFN(preds, src))
    assert np.abs(step - batched).max() < 1e-4
    assert np.abs(step - decode(model, None, IDS)).max() > 1e-3  # sparsity changed something


def test_predictor_roundtrip_and_threshold(tmp_path, model, preds):
    path = tmp_path / "p.safetensors"
    preds.save(path)
    loaded = PredictorSet.load(path)
    assert loaded.ranks == [8, 8] and loaded.threshold == 0.5
    assert (tmp_path / "p.json").is_file()
    x = np.random.default_rng(1).normal(size=(5, model.spec.d_model)).astype(np.float32)
    assert np.abs(loaded.layers[0].logits(x) - preds.layers[0].logits(x)).max() < 0.05
    assert loaded.predict_mask(0, x, 0.0).all()
    assert not loaded.predict_mask(0, x, 1.0).any()
    with pytest.raises(InputError, match="threshold"):
        loaded.predict_mask(0, x, 1.5)
    loaded.check_geometry(model.geometry)
    other = random_predictors(3, model.spec.d_model, model.spec.d_ffn)
    with pytest.raises(InputError, match="predictors do not fit the model"):
        other.check_geometry(model.geometry)
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="unreadable predictor file"):
        PredictorSet.load(tmp_path / "bad.safetensors")


def test_sampling_top_p_and_greedy():
    probs = np.array([0.05, 0.5, 0.15, 0.3])
    logits = np.log(probs)
    assert greedy(logits) == 1
    rng = np.random.default_rng(0)
    draws = np.array([sample_top_p(logits, 0.9, rng) for _ in range(20000)])
    counts = np.bincount(draws, minlength=4) / len(draws)
    assert counts[0] == 0  # outside the nucleus {1, 3, 2} (0.5 + 0.3 + 0.15 >= 0.9)
    assert np.allclose(counts[[1, 3, 2]], np.array([0.5, 0.3, 0.15]) / 0.95, atol=0.015)
    a = [sample_top_p(logits, 0.9, np.random.default_rng(7)) for _ in range(3)]
    b = [sample_top_p(logits, 0.9, np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    assert {sample_top_p(logits, 0.4, rng) for _ in range(50)} == {1}
