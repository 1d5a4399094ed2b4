"""ActivationTrace: which FFN neurons each token used in each layer, in one checksummed file.

A trace holds the model geometry, the tokens, and per (token, layer) the sorted ids of the
truly active neurons (ReLU output > 0) and, when a predictor ran, of the predicted ones.
Neuron sets are stored per layer as CSR arrays (`NeuronSets`): compact, and vectorizable.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..data import resolve_trace
from ..errors import InputError
from ..geometry import ModelGeometry, NeuronSets

TRACE_FORMAT = "flashsim-trace"
TRACE_FORMAT_VERSION = 1


@dataclass
class ActivationTrace:
    """Per (token, layer) active — and predicted — FFN neuron ids of one model run.

    `meta` says where it came from (model, prompt source, sampling, seed, threshold) and
    whether it is synthetic (`meta["synthetic"] is True` only for generated stand-ins).
    """

    geometry: ModelGeometry
    token_ids: np.ndarray  # int32 [n_tokens]: the token fed at each step
    n_prompt_tokens: int
    active: list[NeuronSets]  # per layer: ReLU(fc1 x) > 0
    predicted: list[NeuronSets] | None = None  # per layer: the predictor's choice
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.token_ids = np.asarray(self.token_ids, dtype=np.int32)
        problem = self._problem()
        if problem:
            raise ValueError(f"inconsistent ActivationTrace: {problem}")

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def n_layers(self) -> int:
        return self.geometry.n_layers

    @property
    def is_synthetic(self) -> bool:
        return bool(self.meta.get("synthetic", False))

    def sets(self, which: str = "predicted") -> list[NeuronSets]:
        """The per-layer sets to load: 'predicted' (what a sparse runtime reads) or 'active'."""
        if which == "active":
            return self.active
        if which == "predicted":
            if self.predicted is None:
                raise InputError("trace has no predicted neuron sets", key="which",
                                 expected="a trace captured with a predictor, or which='active'")
            return self.predicted
        raise InputError(f"unknown neuron set {which!r}", key="which",
                         expected="'active' or 'predicted'")

    def head(self, n_generated: int | None) -> ActivationTrace:
        """The trace with its prompt and only its first `n_generated` generated tokens.

        None, or at least as many as the trace has, returns the trace itself; a cut trace
        records where it was cut in `meta["truncated_to_tokens"]`.
        """
        if n_generated is None or self.n_prompt_tokens + n_generated >= self.n_tokens:
            return self
        if n_generated < 1:
            raise InputError(f"{n_generated} tokens", key="tokens", expected="at least 1 token")
        stop = self.n_prompt_tokens + int(n_generated)
        cut = lambda sets: None if sets is None else [s.slice_tokens(0, stop) for s in sets]  # noqa: E731
        return ActivationTrace(self.geometry, self.token_ids[:stop], self.n_prompt_tokens,
                               cut(self.active), cut(self.predicted),
                               dict(self.meta, truncated_to_tokens=stop))

    def check_geometry(self, geometry: ModelGeometry, *, file: str | None = None) -> None:
        """InputError when this trace was not made for a model of `geometry`."""
        diff = self.geometry.mismatch(geometry)
        if diff:
            raise InputError(f"trace geometry does not match the model ({diff})", file=file,
                             key="geometry", expected=f"a trace of {geometry.name}")

    def _problem(self) -> str | None:
        g = self.geometry
        if len(self.active) != g.n_layers:
            return f"{len(self.active)} active layers for n_layers={g.n_layers}"
        if self.predicted is not None and len(self.predicted) != g.n_layers:
            return f"{len(self.predicted)} predicted layers for n_layers={g.n_layers}"
        if not 0 <= self.n_prompt_tokens <= self.n_tokens:
            return f"n_prompt_tokens={self.n_prompt_tokens} of {self.n_tokens} tokens"
        for name, layers in (("active", self.active), ("predicted", self.predicted or [])):
            for layer, s in enumerate(layers):
                if len(s) != self.n_tokens:
                    return f"{name} layer {layer} has {len(s)} tokens, expected {self.n_tokens}"
                if s.ptr[0] != 0 or s.ptr[-1] != len(s.ids) or np.any(np.diff(s.ptr) < 0):
                    return f"{name} layer {layer} has a broken index"
                if len(s.ids) and (s.ids.min() < 0 or s.ids.max() >= g.d_ffn):
                    return f"{name} layer {layer} has neuron ids outside [0, {g.d_ffn})"
        return None

    # ---- file format -------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the trace atomically as a compressed, checksummed `.npz`-style zip."""
        arrays = self._arrays()
        meta = {"format": TRACE_FORMAT, "version": TRACE_FORMAT_VERSION,
                "geometry": self.geometry.to_dict(), "n_prompt_tokens": int(self.n_prompt_tokens),
                "has_predicted": self.predicted is not None, "meta": self.meta,
                "sha256": _checksum(arrays)}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, meta_json=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                            **arrays)
        with atomic_write(path) as handle:
            handle.write(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActivationTrace:
        """Read a trace file, or a bundled trace by name (`opt-mini-ref`); a missing, corrupt,
        foreign or other-version file is an InputError."""
        p = resolve_trace(path)
        if not p.is_file():
            raise InputError("trace file does not exist", file=p)
        try:
            with np.load(p, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
            raise InputError(f"not a readable flashsim trace ({exc.__class__.__name__})",
                             file=p, expected=f"a {TRACE_FORMAT} file") from None
        try:
            meta = json.loads(arrays.pop("meta_json").tobytes().decode())
        except (KeyError, ValueError, UnicodeDecodeError):
            raise InputError("not a flashsim trace (no metadata)", file=p) from None
        if meta.get("format") != TRACE_FORMAT:
            raise InputError(f"not a flashsim trace (format {meta.get('format')!r})", file=p)
        if meta.get("version") != TRACE_FORMAT_VERSION:
            raise InputError(f"trace format version {meta.get('version')}, this flashsim "
                             f"reads version {TRACE_FORMAT_VERSION}", file=p, key="version")
        if _checksum(arrays) != meta.get("sha256"):
            raise InputError("corrupt trace: checksum mismatch", file=p, key="sha256")
        g, has_predicted = _checked_meta(meta, p)
        tokens = _checked_tokens(arrays, meta, p)
        sets = {name: [_checked_sets(arrays, f"{name}_", layer, len(tokens), g.d_ffn, p)
                       for layer in range(g.n_layers)]
                for name in ("active", "predicted") if name == "active" or has_predicted}
        extra = sorted(set(arrays) - {"token_ids"}
                       - {f"{n}_{k}_{l}" for n in sets for k in ("ptr", "ids")
                          for l in range(g.n_layers)})
        if extra:
            raise InputError(f"arrays {', '.join(extra[:3])} do not belong to a trace of "
                             f"{g.n_layers} layers", file=p, key="geometry.n_layers")
        try:
            return cls(g, tokens, meta["n_prompt_tokens"], sets["active"], sets.get("predicted"),
                       meta.get("meta", {}))
        except ValueError as exc:
            raise InputError(str(exc), file=p) from None

    def _arrays(self) -> dict[str, np.ndarray]:
        id_dtype = np.uint16 if self.geometry.d_ffn <= np.iinfo(np.uint16).max + 1 else np.int32
        arrays: dict[str, np.ndarray] = {"token_ids": self.token_ids.astype(np.int32)}
        for name, layers in (("active", self.active), ("predicted", self.predicted or [])):
            for l, s in enumerate(layers):
                arrays[f"{name}_ptr_{l}"] = s.ptr.astype(np.int64)
                arrays[f"{name}_ids_{l}"] = s.ids.astype(id_dtype)
        return arrays


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


GEOMETRY_LIMITS = {"n_layers": 1 << 12, "d_model": 1 << 20, "d_ffn": 1 << 24, "dtype_bytes": 8}
"""Largest value of each geometry key a trace may hold (neuron ids are int32, a weight at most
8 bytes); beyond these a value is damage, not a model."""


def _checked_meta(meta: dict[str, Any], p: os.PathLike) -> tuple[ModelGeometry, bool]:
    """The geometry and whether predicted sets are stored, each key checked for its type and
    range: a trace whose checksum holds can still carry metadata no flashsim wrote."""
    geometry = meta.get("geometry")
    if not isinstance(geometry, dict):
        raise InputError("missing or not a mapping", file=p, key="geometry",
                         expected="name, n_layers, d_model, d_ffn, dtype_bytes")
    unknown = sorted(set(geometry) - {"name", *GEOMETRY_LIMITS})
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r}", file=p, key="geometry",
                         expected="name, n_layers, d_model, d_ffn, dtype_bytes")
    if not isinstance(geometry.get("name"), str):
        raise InputError("missing or not a string", file=p, key="geometry.name")
    for key, limit in GEOMETRY_LIMITS.items():
        _whole(geometry.get(key), 1, limit, p, f"geometry.{key}")
    _whole(meta.get("n_prompt_tokens"), 0, None, p, "n_prompt_tokens")
    if not isinstance(meta.get("has_predicted"), bool):
        raise InputError(f"{meta.get('has_predicted')!r}", file=p, key="has_predicted",
                         expected="true or false")
    if not isinstance(meta.get("meta", {}), dict):
        raise InputError("not a mapping", file=p, key="meta")
    return ModelGeometry(**geometry), meta["has_predicted"]


def _whole(value: Any, low: int, high: int | None, p: os.PathLike, key: str) -> int:
    """`value` as an int in [low, high]; a missing key, a bool, a float or text is refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low \
            or (high is not None and value > high):
        span = f"a whole number ≥ {low}" if high is None else f"a whole number {low} to {high}"
        problem = "missing" if value is None else f"{value!r} is not valid"
        raise InputError(problem, file=p, key=key, expected=span)
    return value


def _array(arrays: dict[str, np.ndarray], name: str, p: os.PathLike) -> np.ndarray:
    """The 1-D integer array `name`, or an InputError naming it."""
    a = arrays.get(name)
    if a is None:
        raise InputError("array is missing", file=p, key=name,
                         expected="one ptr and one ids array per layer (geometry.n_layers)")
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise InputError(f"{a.ndim}-D {a.dtype} array", file=p, key=name,
                         expected="a 1-D integer array")
    return a


def _checked_tokens(arrays: dict[str, np.ndarray], meta: dict[str, Any], p: os.PathLike) -> np.ndarray:
    tokens = _array(arrays, "token_ids", p)
    if meta["n_prompt_tokens"] > len(tokens):
        raise InputError(f"{meta['n_prompt_tokens']} prompt tokens of {len(tokens)}", file=p,
                         key="n_prompt_tokens", expected="at most the number of tokens")
    return tokens


def _checked_sets(arrays: dict[str, np.ndarray], prefix: str, layer: int, n_tokens: int,
                  d_ffn: int, p: os.PathLike) -> NeuronSets:
    """One layer's CSR sets: a ptr of n_tokens + 1 entries from 0 to len(ids), never
    decreasing; ids in [0, d_ffn), strictly increasing within each token."""
    ptr = _array(arrays, f"{prefix}ptr_{layer}", p).astype(np.int64, copy=False)
    ids = _array(arrays, f"{prefix}ids_{layer}", p)
    if len(ptr) != n_tokens + 1 or ptr[0] != 0 or ptr[-1] != len(ids) or np.any(np.diff(ptr) < 0):
        raise InputError(f"broken index ({len(ptr)} entries for {n_tokens} tokens)", file=p,
                         key=f"{prefix}ptr_{layer}",
                         expected=f"{n_tokens + 1} non-decreasing offsets from 0 to {len(ids)}")
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= d_ffn):
        raise InputError(f"neuron ids outside [0, {d_ffn})", file=p, key=f"{prefix}ids_{layer}")
    ids = ids.astype(np.int32, copy=False)
    step = np.diff(ids)  # ids < 2^24: the steps fit int32
    starts = ptr[1:-1]  # a token's first id may be below its predecessor's last
    inside = np.ones(len(step), dtype=bool)
    inside[starts[(starts > 0) & (starts < len(ids))] - 1] = False
    if np.any(step[inside] <= 0):
        raise InputError("neuron ids of a token are unsorted or repeated", file=p,
                         key=f"{prefix}ids_{layer}", expected="strictly increasing ids per token")
    return NeuronSets(ptr, ids)
