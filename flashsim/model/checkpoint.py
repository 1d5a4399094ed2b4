"""Load a Hugging Face OPT checkpoint folder (config.json + safetensors) into numpy arrays.

Only safetensors are read (never pickles). Every problem with the folder — missing file or
tensor, wrong shape, a config that is not OPT or not ReLU — is a one-line InputError.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from ..data import bundled_model_dir
from ..errors import InputError
from ..geometry import ModelGeometry

_CONVERT_HINT = ("a safetensors checkpoint; convert the pickle once with transformers: "
                 "python -c \"from transformers import OPTForCausalLM as M; "
                 "M.from_pretrained('DIR').save_pretrained('DIR', safe_serialization=True)\"")
_PREFIXES = ("model.decoder.", "decoder.", "")


@dataclass(frozen=True)
class OPTSpec:
    """The parts of an OPT config.json the forward pass needs."""

    name: str
    n_layers: int
    d_model: int
    d_ffn: int
    n_heads: int
    vocab_size: int
    max_positions: int  # max_position_embeddings: the longest sequence the model can see
    word_embed_dim: int  # word_embed_proj_dim (== d_model unless project_in/out exist)
    layer_norm_before: bool  # do_layer_norm_before (False for OPT-350m: post-LN)
    final_layer_norm: bool  # the decoder's final LayerNorm exists (pre-LN models)
    enable_bias: bool
    ln_affine: bool  # layer_norm_elementwise_affine
    tied_lm_head: bool
    bos_token_id: int | None
    eos_token_id: int | None

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass
class LayerWeights:
    """One decoder layer in fp32. Linear weights keep torch's [out, in] layout, except fc2,
    stored transposed (`fc2_t`, [d_ffn, d_model]) so neuron i's down-projection is row i."""

    q_w: np.ndarray
    q_b: np.ndarray
    k_w: np.ndarray
    k_b: np.ndarray
    v_w: np.ndarray
    v_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    attn_ln_w: np.ndarray
    attn_ln_b: np.ndarray
    ffn_ln_w: np.ndarray
    ffn_ln_b: np.ndarray
    fc1_w: np.ndarray  # [d_ffn, d_model]
    fc1_b: np.ndarray  # [d_ffn]
    fc2_t: np.ndarray  # [d_ffn, d_model]
    fc2_b: np.ndarray  # [d_model]


@dataclass
class Checkpoint:
    """A loaded OPT model: spec, fp32 weights, and where they came from."""

    spec: OPTSpec
    embed_tokens: np.ndarray  # [vocab, word_embed_dim]
    embed_positions: np.ndarray  # [max_positions + 2, d_model]
    layers: list[LayerWeights]
    final_ln_w: np.ndarray | None
    final_ln_b: np.ndarray | None
    project_in: np.ndarray | None  # [d_model, word_embed_dim]
    project_out: np.ndarray | None  # [word_embed_dim, d_model]
    lm_head: np.ndarray  # [vocab, word_embed_dim] (the embedding itself when tied)
    path: Path
    weights_sha256: str
    stored_dtype_bytes: int  # bytes per weight as stored (2 for fp16)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def geometry(self) -> ModelGeometry:
        """The FFN geometry as flash sees it (dtype bytes as stored on disk)."""
        s = self.spec
        return ModelGeometry(s.name, s.n_layers, s.d_model, s.d_ffn, self.stored_dtype_bytes)


def load_checkpoint(model_dir: str | os.PathLike | None = None) -> Checkpoint:
    """Read an OPT folder (`config.json` + `model.safetensors` or its sharded index) as fp32.

    None means the bundled opt-mini. Pickle-only folders are refused with how to convert them.
    """
    folder = Path(model_dir) if model_dir is not None else bundled_model_dir()
    if not folder.is_dir():
        raise InputError("model folder does not exist", file=folder,
                         expected="a Hugging Face OPT folder with config.json and model.safetensors")
    config = _read_config(folder)
    spec = _spec_from_config(config, folder)
    tensors, files = _read_tensors(folder)
    return _assemble(spec, tensors, files, folder, config)


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise InputError("no config.json in the model folder", file=folder,
                         expected="a Hugging Face OPT folder")
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"config.json is not valid JSON ({exc})", file=path) from None
    if not isinstance(config, dict):
        raise InputError("config.json is not a JSON object", file=path)
    return config


def _spec_from_config(config: dict[str, Any], folder: Path) -> OPTSpec:
    path = folder / "config.json"
    if config.get("model_type") != "opt":
        raise InputError(f"not an OPT model (model_type {config.get('model_type')!r})", file=path,
                         key="model_type", expected="'opt'")
    act = config.get("activation_function", "relu")
    if act != "relu":
        raise InputError(f"activation {act!r} is not ReLU, so the FFN is not sparse", file=path,
                         key="activation_function", expected="'relu'")

    def need_int(key: str, default: Any = None) -> int:
        value = config.get(key)
        value = default if value is None else value
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InputError(f"missing or invalid ({value!r})", file=path, key=key,
                             expected="a positive integer")
        return value

    d_model = need_int("hidden_size")
    n_heads = need_int("num_attention_heads")
    if d_model % n_heads:
        raise InputError(f"hidden_size {d_model} is not divisible by {n_heads} heads", file=path,
                         key="num_attention_heads", expected="a divisor of hidden_size")
    pre_ln = bool(config.get("do_layer_norm_before", True))
    return OPTSpec(
        name=folder.resolve().name,
        n_layers=need_int("num_hidden_layers"), d_model=d_model, d_ffn=need_int("ffn_dim"),
        n_heads=n_heads, vocab_size=need_int("vocab_size"),
        max_positions=need_int("max_position_embeddings"),
        word_embed_dim=need_int("word_embed_proj_dim", d_model),
        layer_norm_before=pre_ln,
        final_layer_norm=pre_ln and not config.get("_remove_final_layer_norm", False),
        enable_bias=bool(config.get("enable_bias", True)),
        ln_affine=bool(config.get("layer_norm_elementwise_affine", True)),
        tied_lm_head=bool(config.get("tie_word_embeddings", True)),
        bos_token_id=config.get("bos_token_id"), eos_token_id=config.get("eos_token_id"))


def _read_tensors(folder: Path) -> tuple[dict[str, np.ndarray], list[Path]]:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = [folder / name for name in sorted(set(weight_map.values()))]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError("unreadable safetensors index", file=index,
                             key="weight_map", expected="the index transformers writes") from None
        for f in files:
            if not f.is_file():
                raise InputError("shard named in the index is missing", file=f)
    elif any(folder.glob("pytorch_model*.bin")):
        raise InputError("only a pickle checkpoint (pytorch_model.bin) found; flashsim reads "
                         "safetensors only", file=folder, expected=_CONVERT_HINT)
    else:
        raise InputError("no model.safetensors in the model folder", file=folder,
                         expected="model.safetensors (or model.safetensors.index.json + shards)")
    tensors: dict[str, np.ndarray] = {}
    for f in files:
        try:
            tensors.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"unreadable safetensors file ({exc})", file=f) from None
    return tensors, files


def _sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of one file's bytes (used to tie traces and predictors to the exact weights)."""
    return _sha256([Path(path)])


def _assemble(spec: OPTSpec, tensors: dict[str, np.ndarray], files: list[Path], folder: Path,
              config: dict[str, Any]) -> Checkpoint:
    prefix = next((p for p in _PREFIXES if f"{p}embed_tokens.weight" in tensors), None)
    if prefix is None:
        raise InputError("tensor embed_tokens.weight is missing", file=files[0],
                         key="model.decoder.embed_tokens.weight",
                         expected="an OPT checkpoint saved by transformers")
    d, f, w = spec.d_model, spec.d_ffn, spec.word_embed_dim
    dtype_bytes = tensors[f"{prefix}embed_tokens.weight"].dtype.itemsize

    def get(name: str, shape: tuple[int, ...], *, required: bool = True) -> np.ndarray | None:
        key = prefix + name if not name.startswith("lm_head") else name
        array = tensors.get(key)
        if array is None:
            if required:
                raise InputError("tensor is missing", file=files[0], key=key,
                                 expected=f"shape {list(shape)}")
            return None
        if tuple(array.shape) != shape:
            raise InputError(f"tensor has shape {list(array.shape)}", file=files[0], key=key,
                             expected=f"shape {list(shape)} from config.json")
        if not np.issubdtype(array.dtype, np.floating):
            raise InputError(f"tensor has dtype {array.dtype}", file=files[0], key=key,
                             expected="a floating-point dtype")
        return np.ascontiguousarray(array, dtype=np.float32)

    bias = spec.enable_bias
    zeros_d = np.zeros(d, np.float32)

    def ln(name: str) -> tuple[np.ndarray, np.ndarray]:
        if not spec.ln_affine:
            return np.ones(d, np.float32), zeros_d
        return get(f"{name}.weight", (d,)), get(f"{name}.bias", (d,))

    def lin_bias(name: str, n: int) -> np.ndarray:
        return get(name, (n,)) if bias else np.zeros(n, np.float32)

    layers = []
    for i in range(spec.n_layers):
        p = f"layers.{i}."
        attn_ln = ln(p + "self_attn_layer_norm")
        ffn_ln = ln(p + "final_layer_norm")
        fc2 = get(p + "fc2.weight", (d, f))
        layers.append(LayerWeights(
            q_w=get(p + "self_attn.q_proj.weight", (d, d)), q_b=lin_bias(p + "self_attn.q_proj.bias", d),
            k_w=get(p + "self_attn.k_proj.weight", (d, d)), k_b=lin_bias(p + "self_attn.k_proj.bias", d),
            v_w=get(p + "self_attn.v_proj.weight", (d, d)), v_b=lin_bias(p + "self_attn.v_proj.bias", d),
            out_w=get(p + "self_attn.out_proj.weight", (d, d)),
            out_b=lin_bias(p + "self_attn.out_proj.bias", d),
            attn_ln_w=attn_ln[0], attn_ln_b=attn_ln[1], ffn_ln_w=ffn_ln[0], ffn_ln_b=ffn_ln[1],
            fc1_w=get(p + "fc1.weight", (f, d)), fc1_b=lin_bias(p + "fc1.bias", f),
            fc2_t=np.ascontiguousarray(fc2.T), fc2_b=lin_bias(p + "fc2.bias", d)))
    embed = get("embed_tokens.weight", (spec.vocab_size, w))
    final_w = final_b = None
    if spec.final_layer_norm:
        final_w, final_b = ln("final_layer_norm")
    project_in = project_out = None
    if w != d:
        project_in = get("project_in.weight", (d, w))
        project_out = get("project_out.weight", (w, d))
    lm_head = None if spec.tied_lm_head else get("lm_head.weight", (spec.vocab_size, w))
    return Checkpoint(
        spec=spec, embed_tokens=embed,
        embed_positions=get("embed_positions.weight", (spec.max_positions + 2, d)),
        layers=layers, final_ln_w=final_w, final_ln_b=final_b,
        project_in=project_in, project_out=project_out,
        lm_head=lm_head if lm_head is not None else embed,
        path=folder, weights_sha256=_sha256(files), stored_dtype_bytes=dtype_bytes, config=config)
