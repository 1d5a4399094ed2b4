"""Tiny OPT checkpoints and predictors for the model tests (built with transformers / numpy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from flashsim.model.predictor import LayerPredictor, PredictorSet


def build_random_opt(folder: Path, *, pre_ln: bool = True, word_embed_dim: int | None = None,
                     vocab: int = 300, d_model: int = 64, n_layers: int = 2, d_ffn: int = 256,
                     n_heads: int = 4, max_pos: int = 128, fp16: bool = False, seed: int = 0,
                     tokenizer_text: str | None = None) -> Path:
    """A randomly initialised OPTForCausalLM saved as safetensors. Weights are scaled up from
    the tiny default init so logits spread (a real test of the arithmetic) and fc1 biases are
    shifted down so the FFN is sparse, as in a trained ReLU model."""
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    cfg = OPTConfig(vocab_size=vocab, hidden_size=d_model, num_hidden_layers=n_layers,
                    ffn_dim=d_ffn, num_attention_heads=n_heads, max_position_embeddings=max_pos,
                    activation_function="relu", do_layer_norm_before=pre_ln,
                    word_embed_proj_dim=word_embed_dim or d_model,
                    bos_token_id=2, eos_token_id=2, pad_token_id=1)
    model = OPTForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            elif name.endswith("fc1.bias"):
                p.copy_(torch.randn_like(p) * 0.05 - 0.3)
            elif name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.05)
            else:
                p.mul_(5.0)
    if fp16:
        model = model.half()
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer_text is not None:
        build_tokenizer(tokenizer_text, vocab).save(str(folder / "tokenizer.json"))
    return folder


def build_tokenizer(text: str, vocab: int):
    """A byte-level BPE with OPT's special ids 0..3 (<s> <pad> </s> <unk>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def random_predictors(n_layers: int, d_model: int, d_ffn: int, rank: int = 8, seed: int = 0,
                      threshold: float = 0.5) -> PredictorSet:
    """Untrained low-rank predictors (random but fixed): enough to exercise the sparse path."""
    rng = np.random.default_rng(seed)
    layers = [LayerPredictor(rng.normal(0, 0.3, (rank, d_model)).astype(np.float32),
                             np.zeros(rank, np.float32),
                             rng.normal(0, 0.3, (d_ffn, rank)).astype(np.float32),
                             rng.normal(0, 0.5, d_ffn).astype(np.float32))
              for _ in range(n_layers)]
    return PredictorSet(layers, threshold, {"note": "random test predictors"})


def edit_config(folder: Path, **changes) -> None:
    """Change keys of a saved config.json (None deletes the key)."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))
