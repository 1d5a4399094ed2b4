"""The bundled opt-mini model and its held-out text: loadable, fp16, ReLU, as the card says,
never trained on."""

from __future__ import annotations

import hashlib
import json
import math
import re

import numpy as np
import pytest

from flashsim.data import BUNDLED_MODEL_DIR as MODEL
from flashsim.data import TEXT_DIR as TEXT
from flashsim.model import corpus

HELDOUT_FILES = ("heldout-eval.txt", "heldout-prompts.txt", "heldout-train-trace.txt")


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((MODEL / "config.json").read_text())


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((TEXT / "manifest.json").read_text())


def _card_geometry() -> dict[str, int]:
    """The `| key | value |` rows of the model card's architecture table."""
    card = (MODEL / "MODEL_CARD.md").read_text()
    rows = dict(re.findall(r"^\|\s*`(\w+)`\s*\|\s*(\d+)\s*\|", card, flags=re.M))
    return {k: int(v) for k, v in rows.items()}


def test_config_is_fp16_relu_prenorm_opt(config):
    assert config["model_type"] == "opt"
    assert config["activation_function"] == "relu"
    assert config["do_layer_norm_before"] is True
    assert config["torch_dtype"] == "float16"
    assert config["word_embed_proj_dim"] == config["hidden_size"]
    assert config["tie_word_embeddings"] is True
    assert config["max_position_embeddings"] == 512
    # OPT's numbering: pad 1, bos = eos = 2 ("</s>")
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (1, 2, 2)


def test_geometry_matches_card_and_tensors(config):
    from safetensors.numpy import load_file

    card = _card_geometry()
    assert card == {"n_layers": 4, "d_model": 256, "d_ffn": 1024, "n_heads": 4,
                    "vocab_size": 4096, "max_positions": 512}
    assert config["num_hidden_layers"] == card["n_layers"]
    assert config["hidden_size"] == card["d_model"]
    assert config["ffn_dim"] == card["d_ffn"]
    assert config["num_attention_heads"] == card["n_heads"]
    assert config["vocab_size"] == card["vocab_size"]
    tensors = load_file(MODEL / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {np.dtype(np.float16)}
    pre = "model.decoder."
    assert tensors[pre + "embed_tokens.weight"].shape == (card["vocab_size"], card["d_model"])
    # learned positions carry OPT's offset of 2
    positions = tensors[pre + "embed_positions.weight"]
    assert positions.shape == (card["max_positions"] + 2, card["d_model"])
    for l in range(card["n_layers"]):
        assert tensors[f"{pre}layers.{l}.fc1.weight"].shape == (card["d_ffn"], card["d_model"])
        assert tensors[f"{pre}layers.{l}.fc2.weight"].shape == (card["d_model"], card["d_ffn"])
    assert f"{pre}layers.{card['n_layers']}.fc1.weight" not in tensors
    assert (MODEL / "model.safetensors").stat().st_size < 10 * 2**20


@pytest.mark.torch
def test_loads_with_transformers_and_matches_shipped_metrics():
    import torch
    from tokenizers import Tokenizer
    from transformers import OPTForCausalLM

    model = OPTForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    assert model.config.activation_function == "relu"
    metrics = json.loads((MODEL / "training_metrics.json").read_text())
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    eot = tok.token_to_id("</s>")
    text = (TEXT / "heldout-eval.txt").read_text()
    ids = tok.encode(text).ids
    assert ids[0] == eot  # the tokenizer prepends </s>, as OPT's does and as training did
    x = torch.tensor([ids[:513]])
    acts = []
    hooks = [l.fc2.register_forward_pre_hook(lambda m, i: acts.append(i[0].reshape(-1, 1024)))
             for l in model.model.decoder.layers]
    with torch.no_grad():
        logits = model(input_ids=x[:, :-1]).logits
    for h in hooks:
        h.remove()
    nll = torch.nn.functional.cross_entropy(logits[0], x[0, 1:]).item()
    sparsity = [float((a <= 0).float().mean()) for a in acts]
    # a trained model on its own kind of prose, far from uniform guessing over 4096 tokens
    assert math.exp(nll) < 200 < 4096
    # the card's claim: FFN sparsity >= 90% in most layers on held-out text
    assert sum(s >= 0.9 for s in sparsity) >= 3
    # and the shipped metrics describe these weights (one window vs the whole eval file)
    assert np.allclose(sparsity, metrics["heldout_sparsity"], atol=0.05)
    assert metrics["heldout_perplexity"] < 200


def test_tokenizer_round_trips_heldout_text(config):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    assert tok.get_vocab_size() == config["vocab_size"]
    assert tok.token_to_id("</s>") == config["eos_token_id"]
    assert tok.token_to_id("<pad>") == config["pad_token_id"]
    for name in HELDOUT_FILES:
        text = (TEXT / name).read_text()
        ids = tok.encode(text).ids
        assert ids[0] == config["bos_token_id"] and config["bos_token_id"] not in ids[1:]
        assert tok.decode(ids) == text
        # a BPE trained on English prose packs several characters per token (bytes would be 1)
        assert len(text) / len(ids) > 3.0


def test_heldout_files_are_heldout_by_the_split_function(manifest):
    assert manifest["split_salt"] == corpus.SPLIT_SALT
    roles = {}
    for name in HELDOUT_FILES:
        entry = manifest["files"][name]
        text = (TEXT / name).read_text()
        assert hashlib.sha256(text.encode()).hexdigest() == entry["sha256"]
        assert entry["sources"], name
        for src in entry["sources"]:
            assert corpus.split_of(src) == "heldout", src
            assert corpus.heldout_role(src) == entry["role"], src
            roles.setdefault(src, []).append(name)
    # the three pieces come from disjoint files
    assert all(len(v) == 1 for v in roles.values())
    assert corpus.split_of("tutorial/classes.rst.txt") == "train"
    # about 5% of files are held out
    n_held = sum(len(manifest["files"][n]["sources"]) for n in HELDOUT_FILES)
    assert 0.02 < n_held / (n_held + manifest["n_train_files"]) < 0.08


@pytest.mark.slow
@pytest.mark.apt
@pytest.mark.skipif(not corpus.DOC_ROOT.is_dir(),
                    reason="Debian package python3.11-doc is not installed "
                           "(apt-get install python3.11-doc)")
def test_heldout_text_is_absent_from_training_text(manifest):
    groups = corpus.split_documents(corpus.load_documents())
    train_text = "\n".join(d.text for d in groups["train"])
    for name in HELDOUT_FILES:
        role = manifest["files"][name]["role"]
        text = (TEXT / name).read_text()
        # the shipped file is exactly the held-out documents of its role
        assert text == "\n\n".join(d.text for d in groups[role]) + "\n"
        long_paragraphs = [p for p in text.split("\n\n") if len(p) > 200]
        assert len(long_paragraphs) >= 10
        leaked = [p for p in long_paragraphs if p in train_text]
        assert not leaked, leaked[:1]
