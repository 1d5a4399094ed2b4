"""Inference from flash: the sparse OPT decode with its FFN weights read from a weight store.

`FlashWeightSource` is an `FFNWeightSource`: for every (token, layer) the predictor's ids
arrive in `rows()`. Its `DramManager` (layout/dram.py) is the paper's memory management
(§3.3): the layout's `Residency` (the plan's window logic, stepped online) says which
neurons to read and which rows leave DRAM, `Layout.batch_reads` (the plan's derivation of a
batch's reads) says what to read, and after the `DirectReader` has read it (`queue_depth`
reads in flight) the manager decodes the fp16 records into fp32 rows of the layer's
preallocated matrix (leaving rows overwritten by the last ones, new rows appended). So the
runtime reads exactly the bytes the plan says (a test checks it read by read).

Per token it measures three parts that add up to the token's wall time:
I/O = `read_batch` alone; memory = the manager's work around it (window bookkeeping, read
derivation, decode of the read bytes, row copies); compute = the rest (embeddings,
attention, predictor, the FFN over the predicted rows, LM head, sampling). No overlap:
`read_batch` is synchronous (it returns once the batch's last read completes and nothing
else runs meanwhile), and layer l's reads need layer l's predictor, so I/O, memory and
compute run one after another and the cost model adds them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import bundled_model_dir, default_predictors_path
from ..errors import InputError
from ..geometry import NeuronSets
from ..io.reader import DirectReader, open_reader
from ..layout.base import Layout
from ..layout.dram import DramManager
from ..layout.placement import Placement
from ..model.checkpoint import Checkpoint, load_checkpoint
from ..model.opt import OPTModel
from ..model.predictor import PredictorSet, logit
from ..model.sampling import check_top_p, next_token
from ..model.sparse import SparseFFN, one_blas_thread
from ..model.tokenizer import check_request, load_tokenizer, prompt_ids
from .store import WeightStore, _dtype


def _check_store(store: WeightStore, placement: Placement, layout: Layout,
                 ckpt: Checkpoint) -> None:
    """InputError unless the store holds these weights where the layout places them."""
    g = ckpt.geometry
    if store.digest != placement.digest() or store.geometry.mismatch(g):
        raise InputError(f"store has layout {store.index['layout']['name']!r}, not "
                         f"{layout.name!r} for {g.name}", file=store.path,
                         key="placement.digest",
                         expected=f"a store built with --layout {layout.name}")
    sha = store.index["model"].get("weights_sha256")
    if sha and sha != ckpt.weights_sha256:
        raise InputError("store was built from other weights than the model",
                         file=store.path, key="model.weights_sha256")


@dataclass
class TokenTimes:
    """Measured times and bytes of one (token, layer) or one token."""

    io_s: float = 0.0
    mem_s: float = 0.0
    bytes_read: int = 0
    reads: int = 0
    neurons_loaded: int = 0

    def add(self, other: TokenTimes) -> None:
        self.io_s += other.io_s
        self.mem_s += other.mem_s
        self.bytes_read += other.bytes_read
        self.reads += other.reads
        self.neurons_loaded += other.neurons_loaded


class FlashWeightSource:
    """FFN weights from a weight store through a windowed DRAM cache (see the module doc)."""

    def __init__(self, store: WeightStore, layout: Layout, ckpt: Checkpoint, *,
                 queue_depth: int = 32, reader: DirectReader | None = None,
                 record_reads: bool = False, allow_page_cache: bool = False) -> None:
        g = ckpt.geometry
        if layout.dense_ffn:
            raise InputError(f"layout {layout.name!r} reads the dense FFN; generate runs the "
                             "sparse decode", key="layout",
                             expected="a sparse layout (sparse, bundled, windowed, "
                                      "windowed+bundled, coactivation…)")
        self.placement = layout.placement(g)
        _check_store(store, self.placement, layout, ckpt)
        if isinstance(queue_depth, bool) or int(queue_depth) < 1:
            raise InputError(f"queue depth {queue_depth} must be at least 1", key="qd")
        self.memory = DramManager(layout, g, _dtype(g))
        self.residency = self.memory.residency
        if self.residency.budget_rows is not None:
            raise InputError("generate does not apply a DRAM budget", key="dram_budget_bytes",
                             expected="no --dram-budget")
        self.layout = layout
        self.geometry = g
        self.queue_depth = int(queue_depth)
        self.reader = reader or open_reader(store.path, "auto", allow_page_cache)
        self._own_reader = reader is None
        self.fc1_b = [l.fc1_b for l in ckpt.layers]
        self.fc2_b = [l.fc2_b for l in ckpt.layers]
        self.matrices = self.memory.matrices
        self.token = -1
        self.done: set[int] = set()
        self.layer_times: list[TokenTimes] = []
        self.record_reads = record_reads
        self.reads: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        # perf_counter stamps (s) around each (token, layer)'s read_batch, when recording
        self.batch_times_s: dict[tuple[int, int], tuple[float, float]] = {}
        self.predicted: list[list[np.ndarray]] = [[] for _ in range(g.n_layers)]

    def close(self) -> None:
        if self._own_reader:
            self.reader.close()

    # ---- token bookkeeping --------------------------------------------------------------
    def begin_token(self, t: int) -> None:
        """Start position t (every fed token, the prompt included)."""
        self.token = t
        self.done = set()
        self.layer_times = [TokenTimes() for _ in range(self.geometry.n_layers)]

    def end_token(self) -> TokenTimes:
        """Layers the FFN skipped (no predicted neuron) still age their window; sum the times."""
        for layer in range(self.geometry.n_layers):
            if layer not in self.done:
                self._step(layer, np.zeros(0, np.int64))
        total = TokenTimes()
        for lt in self.layer_times:
            total.add(lt)
        return total

    # ---- FFNWeightSource ----------------------------------------------------------------
    def rows(self, layer: int, neuron_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """fp32 (fc1 rows, fc1 bias, fc2 cols) of `neuron_ids`, read from flash as needed."""
        ids = np.asarray(neuron_ids, np.int64)
        self._step(layer, ids)
        m = self.memory.rows(layer, ids)
        d = self.geometry.d_model
        return m[:, :d], self.fc1_b[layer][ids], m[:, d:]

    def fc2_bias(self, layer: int) -> np.ndarray:
        return self.fc2_b[layer]

    # ---- one (token, layer) ---------------------------------------------------------------
    def _step(self, layer: int, ids: np.ndarray) -> None:
        """The memory manager decides and derives the reads; read; it stores the rows.

        I/O is `read_batch` alone (synchronous: it returns when the last read completes, so
        nothing else runs meanwhile); memory is everything the manager does around it.
        """
        if layer in self.done:
            raise RuntimeError(f"layer {layer} fetched twice for token {self.token}")
        self.done.add(layer)
        self.predicted[layer].append(ids.astype(np.int32))
        t0 = time.perf_counter()
        step, off, length = self.memory.prepare(self.token, layer, ids)
        t1 = time.perf_counter()
        got = self.reader.read_batch(off, length, self.queue_depth, return_data=True,
                                     reuse_buffer=True)
        t2 = time.perf_counter()
        self.memory.store(layer, step, off, length, got.data)
        t3 = time.perf_counter()
        if self.record_reads:
            self.reads[(self.token, layer)] = (off, length)
            self.batch_times_s[(self.token, layer)] = (t1, t2)
        lt = self.layer_times[layer]
        lt.io_s += t2 - t1
        # window bookkeeping, read derivation; fp16 -> fp32 rows and row copies
        lt.mem_s += (t1 - t0) + (t3 - t2)
        lt.bytes_read += int(length.sum())
        lt.reads += len(off)
        lt.neurons_loaded += len(step.new)




@dataclass
class Generation:
    """What `generate_from_flash` returns: the text, the tokens and the per-token times."""

    text: str
    token_ids: np.ndarray  # every fed token, prompt included, then the last sampled one
    n_prompt_tokens: int
    generated_ids: np.ndarray
    per_token: list[dict[str, Any]]  # generated tokens only
    summary: dict[str, Any]
    predicted: list[NeuronSets] = field(default_factory=list)  # per layer, every fed token
    reads: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    batch_times_s: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)


def generate_from_flash(store_path: str | os.PathLike, layout: Layout, *,
                        model_dir: str | os.PathLike | None = None, prompt_text: str,
                        n_tokens: int, queue_depth: int = 32, seed: int = 0,
                        top_p: float | None = 0.9, threshold: float | None = None,
                        predictors: str | os.PathLike | None = None,
                        allow_page_cache: bool = False, record_reads: bool = False,
                        ) -> Generation:
    """Sparse decode of `prompt_text` + `n_tokens` tokens with FFN weights from the store.

    Same prompt handling, sampling and seed use as `trace.capture.capture_trace`, so the
    tokens equal the in-DRAM sparse decode's.
    """
    check_request(prompt_text, n_tokens)
    check_top_p(top_p)
    if threshold is not None:
        logit(threshold)
    folder = Path(model_dir) if model_dir is not None else bundled_model_dir()
    ckpt = load_checkpoint(folder)
    tok = load_tokenizer(folder)
    ids = prompt_ids(tok, ckpt.spec, prompt_text, n_tokens)
    pred_path = Path(predictors) if predictors is not None else default_predictors_path(folder)
    preds = PredictorSet.load(pred_path)
    preds.check_geometry(ckpt.geometry, file=pred_path)
    store = WeightStore.open(store_path)
    source = FlashWeightSource(store, layout, ckpt, queue_depth=queue_depth,
                               record_reads=record_reads, allow_page_cache=allow_page_cache)
    try:
        with one_blas_thread():
            ffn = SparseFFN(preds, source, threshold=threshold)
            fed, generated, per_token = _decode_tokens(OPTModel(ckpt), ffn, source, ids,
                                                       n_tokens, top_p, seed)
    finally:
        source.close()
    gen_ids = np.asarray(generated[:n_tokens], np.int64)
    summary: dict[str, Any] = {
        "layout": layout.name, "queue_depth": int(queue_depth),
        "window": source.residency.window, "store": str(store.path),
        "o_direct": source.reader.o_direct, "prompt_tokens": len(ids),
        "generated_tokens": int(n_tokens), "seed": int(seed), "top_p": top_p,
        **_timing_summary(per_token)}
    predicted = [NeuronSets.from_lists(p) for p in source.predicted]
    return Generation(tok.decode([int(i) for i in gen_ids]), np.asarray(fed, np.int64),
                      len(ids), gen_ids, per_token, summary, predicted, source.reads,
                      source.batch_times_s)


def _decode_tokens(model: OPTModel, ffn: SparseFFN, source: FlashWeightSource,
                   ids: list[int], n_tokens: int, top_p: float | None, seed: int
                   ) -> tuple[list[int], list[int], list[dict[str, Any]]]:
    """Feed the prompt, then sample: (fed tokens, sampled tokens, per generated token times)."""
    cache = model.new_cache(len(ids) + n_tokens)
    rng = np.random.default_rng(seed)
    fed: list[int] = []
    generated: list[int] = []
    per_token: list[dict[str, Any]] = []
    token = ids[0]
    for step in range(len(ids) + n_tokens):
        fed.append(token)
        source.begin_token(step)
        t0 = time.perf_counter()
        logits = model.forward([token], cache, ffn)[-1]
        times = source.end_token()
        nxt = ids[step + 1] if step + 1 < len(ids) else next_token(logits, top_p, rng)
        total_s = time.perf_counter() - t0
        if step >= len(ids):  # a generated position (the plan's tokens)
            per_token.append({
                "position": step, "token_id": int(token),
                "io_ms": times.io_s * 1e3, "mem_ms": times.mem_s * 1e3,
                "compute_ms": (total_s - times.io_s - times.mem_s) * 1e3,
                "total_ms": total_s * 1e3, "bytes_read": times.bytes_read,
                "reads": times.reads, "neurons_loaded": times.neurons_loaded})
        if step + 1 >= len(ids):
            generated.append(int(nxt))
        token = nxt
    return fed, generated, per_token


def _timing_summary(per_token: list[dict[str, Any]]) -> dict[str, float]:
    """p50 / p99 / mean of the per-token times, mean bytes and reads per token."""
    if not per_token:
        return {}
    out: dict[str, float] = {}
    for col in ("io_ms", "mem_ms", "compute_ms", "total_ms"):
        v = np.array([r[col] for r in per_token])
        out[f"{col}_p50"] = float(np.percentile(v, 50))
        out[f"{col}_p99"] = float(np.percentile(v, 99))
        out[f"{col}_mean"] = float(v.mean())
    out["bytes_per_token"] = float(np.mean([r["bytes_read"] for r in per_token]))
    out["reads_per_token"] = float(np.mean([r["reads"] for r in per_token]))
    return out
