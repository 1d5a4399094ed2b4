"""Inference from flash: the sparse OPT decode with its FFN weights read from a weight store.

`FlashWeightSource` is an `FFNWeightSource`: for every (token, layer) the predictor's ids
arrive in `rows()`. Neurons not in the layer's DRAM cache are read from the store with the
`DirectReader` (`queue_depth` reads in flight); the reads are built by the same code as the
layout's IOPlan (`layout.read_units`, the placement's offsets, `align_merge`), so the
runtime reads exactly the bytes the plan says (a test checks it token by token).

The DRAM cache is the paper's memory management (§3.3), per layer: a preallocated matrix of
[fc1 row | fc2 col] rows, a pointer array `slot` (neuron of each row) and `n_used`. After
token t the cache holds the neurons used in the last k tokens (windowed layouts; k = 1 with
nothing kept for the others); deleting overwrites the rows of leaving neurons with the last
rows, inserting appends the new rows. Per token it measures I/O, memory-management and the
rest (compute) time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..layout.align import align_merge
from ..layout.base import Layout
from ..layout.naive import NaiveLayout
from ..layout.placement import Placement
from ..geometry import NeuronSets
from ..io.reader import DirectReader
from .store import WeightStore, _dtype

_NEVER = np.int64(-(1 << 40))


def plan_reads(layout: Layout, placement: Placement, layer: int,
               loads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, lengths) of the aligned, merged reads that bring `loads` of one layer.

    The same steps as `layout.base.build_plan` for one (token, layer) batch.
    """
    units = layout.read_units(layer, NeuronSets(np.array([0, len(loads)], np.int64),
                                                 np.asarray(loads, np.int32)), placement)
    ids = units.ids.astype(np.int64)
    starts = [placement.fc1_offset_bytes[layer, ids]]
    if placement.kind == "split":
        starts.append(placement.fc2_offset_bytes[layer, ids])
    start = np.concatenate(starts)
    _, off, length = align_merge(np.zeros(len(start), np.int64), start,
                                 start + placement.read_unit_bytes, n_batches=1,
                                 block_bytes=placement.block_bytes,
                                 gap_bytes=layout.merge_gap_bytes,
                                 max_read_bytes=layout.max_read_bytes)
    return off, length


def _locate(read_off: np.ndarray, read_len: np.ndarray, want: np.ndarray,
            nbytes: int) -> np.ndarray:
    """Position in the concatenated read data of each byte range [want, want + nbytes), or -1."""
    if len(read_off) == 0:
        return np.full(len(want), -1, np.int64)
    base = np.concatenate([[0], np.cumsum(read_len)[:-1]])
    r = np.searchsorted(read_off, want, side="right") - 1
    rc = np.clip(r, 0, None)
    ok = (r >= 0) & (want + nbytes <= read_off[rc] + read_len[rc])
    return np.where(ok, base[rc] + want - read_off[rc], -1)


class LayerCache:
    """One layer's DRAM matrix with the paper's delete-by-overwrite / append management."""

    def __init__(self, d_ffn: int, d_model: int, capacity: int | None = None) -> None:
        self.capacity = capacity or d_ffn
        self.matrix = np.zeros((self.capacity, 2 * d_model), np.float32)  # [fc1 row | fc2 col]
        self.slot = np.zeros(self.capacity, np.int64)  # neuron held by row r
        self.pos = np.full(d_ffn, -1, np.int64)  # row of neuron i (-1: not resident)
        self.last_used = np.full(d_ffn, _NEVER, np.int64)
        self.n_used = 0

    def resident(self) -> np.ndarray:
        return np.sort(self.slot[:self.n_used])

    def delete(self, keep: np.ndarray) -> int:
        """Drop resident neurons where `keep` is False; rows above the cut fill the holes."""
        rows = self.slot[:self.n_used]
        dropped = rows[~keep[rows]]
        cut = self.n_used - len(dropped)
        holes = np.sort(self.pos[dropped])
        holes = holes[holes < cut]
        tail = self.slot[cut:self.n_used]
        movers = tail[keep[tail]]
        self.matrix[holes] = self.matrix[self.pos[movers]]
        self.slot[holes] = movers
        self.pos[movers] = holes
        self.pos[dropped] = -1
        self.n_used = cut
        return len(holes)

    def append(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Append the rows of new neurons `ids` at the end of the matrix."""
        n = len(ids)
        if self.n_used + n > self.capacity:
            raise InputError(f"DRAM cache of {self.capacity} rows is full", key="capacity")
        self.matrix[self.n_used:self.n_used + n] = rows
        self.slot[self.n_used:self.n_used + n] = ids
        self.pos[ids] = np.arange(self.n_used, self.n_used + n)
        self.n_used += n


@dataclass
class TokenTimes:
    """Measured times and bytes of one (token, layer) or one token."""

    io_s: float = 0.0
    mem_s: float = 0.0
    bytes_read: int = 0
    reads: int = 0
    neurons_loaded: int = 0


class FlashWeightSource:
    """FFN weights from a weight store through a windowed DRAM cache (see the module doc)."""

    def __init__(self, store: WeightStore, layout: Layout, ckpt: Any, *, queue_depth: int = 32,
                 reader: DirectReader | None = None, record_reads: bool = False,
                 allow_page_cache: bool = False) -> None:
        g = ckpt.geometry
        if isinstance(layout, NaiveLayout):
            raise InputError(f"layout {layout.name!r} reads the dense FFN; generate runs the "
                             "sparse decode", key="layout",
                             expected="a sparse layout (sparse, bundled, windowed, "
                                      "windowed+bundled, coactivation…)")
        self.placement = layout.placement(g)
        if store.digest != self.placement.digest() or store.geometry.mismatch(g):
            raise InputError(f"store has layout {store.index['layout']['name']!r}, not "
                             f"{layout.name!r} for {g.name}", file=store.path,
                             key="placement.digest",
                             expected=f"a store built with --layout {layout.name}")
        sha = store.index["model"].get("weights_sha256")
        if sha and sha != ckpt.weights_sha256:
            raise InputError("store was built from other weights than the model",
                             file=store.path, key="model.weights_sha256")
        if isinstance(queue_depth, bool) or int(queue_depth) < 1:
            raise InputError(f"queue depth {queue_depth} must be at least 1", key="qd")
        self.layout = layout
        self.geometry = g
        self.window = getattr(layout, "window", None)
        if getattr(layout, "dram_budget_bytes", None) is not None:
            raise InputError("generate does not apply a DRAM budget", key="dram_budget_bytes",
                             expected="no --dram-budget")
        self.queue_depth = int(queue_depth)
        from ..io.reader import open_reader
        self.reader = reader or open_reader(store.path, "auto", allow_page_cache)
        self._own_reader = reader is None
        self.dtype = _dtype(g)
        self.fc1_b = [l.fc1_b for l in ckpt.layers]
        self.fc2_b = [l.fc2_b for l in ckpt.layers]
        self.caches = [LayerCache(g.d_ffn, g.d_model) for _ in range(g.n_layers)]
        self.token = -1
        self.done: set[int] = set()
        self.layer_times: list[TokenTimes] = []
        self.record_reads = record_reads
        self.reads: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
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
            total.io_s += lt.io_s
            total.mem_s += lt.mem_s
            total.bytes_read += lt.bytes_read
            total.reads += lt.reads
            total.neurons_loaded += lt.neurons_loaded
        return total

    # ---- FFNWeightSource ----------------------------------------------------------------
    def rows(self, layer: int, neuron_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """fp32 (fc1 rows, fc1 bias, fc2 cols) of `neuron_ids`, read from flash as needed."""
        ids = np.asarray(neuron_ids, np.int64)
        self._step(layer, ids)
        cache = self.caches[layer]
        m = cache.matrix[cache.pos[ids]]
        d = self.geometry.d_model
        return m[:, :d], self.fc1_b[layer][ids], m[:, d:]

    def fc2_bias(self, layer: int) -> np.ndarray:
        return self.fc2_b[layer]

    # ---- one (token, layer) ---------------------------------------------------------------
    def _step(self, layer: int, ids: np.ndarray) -> None:
        if layer in self.done:
            raise RuntimeError(f"layer {layer} fetched twice for token {self.token}")
        self.done.add(layer)
        t = self.token
        cache = self.caches[layer]
        self.predicted[layer].append(ids.astype(np.int32))
        if self.window is None:  # nothing is kept between tokens: every neuron is read
            t_drop = time.perf_counter()
            cache.delete(np.zeros(self.geometry.d_ffn, bool))
            self.layer_times[layer].mem_s += time.perf_counter() - t_drop
        new = ids[cache.pos[ids] < 0]
        off, length = plan_reads(self.layout, self.placement, layer, new)
        if self.record_reads:
            self.reads[(t, layer)] = (off, length)
        lt = self.layer_times[layer]
        t0 = time.perf_counter()
        got = self.reader.read_batch(off, length, self.queue_depth, return_data=True)
        t1 = time.perf_counter()
        rows = self._decode(layer, new, off, length, got.data)
        cache.last_used[ids] = t
        k = self.window or 1
        keep = cache.last_used >= t - k + 1
        cache.delete(keep)
        cache.append(new, rows)
        t3 = time.perf_counter()
        lt.io_s += t1 - t0
        lt.mem_s += t3 - t1  # cutting rows out of the reads (fp16 → fp32), delete, append
        lt.bytes_read += int(length.sum())
        lt.reads += len(off)
        lt.neurons_loaded += len(new)

    def _decode(self, layer: int, new: np.ndarray, off: np.ndarray, length: np.ndarray,
                data: np.ndarray) -> np.ndarray:
        """[len(new), 2 * d_model] fp32 rows of the new neurons, cut out of the read bytes."""
        g, p = self.geometry, self.placement
        row = g.row_bytes
        fc1_at = _locate(off, length, p.fc1_offset_bytes[layer, new], row)
        fc2_at = _locate(off, length, p.fc2_offset_bytes[layer, new], row)
        missing = np.flatnonzero((fc1_at < 0) | (fc2_at < 0))
        if len(missing):  # closest-friend placements: the neuron came as a friend copy
            c_layer, c_neuron, c_fc1, c_fc2 = p.copies()
            sel = c_layer == layer
            c_neuron, c_fc1, c_fc2 = c_neuron[sel], c_fc1[sel], c_fc2[sel]
            for i in missing:
                cand = np.flatnonzero(c_neuron == new[i])
                a1 = _locate(off, length, c_fc1[cand], row)
                a2 = _locate(off, length, c_fc2[cand], row)
                ok = np.flatnonzero((a1 >= 0) & (a2 >= 0))
                if len(ok) == 0:
                    raise RuntimeError(f"neuron {new[i]} of layer {layer} is not in the reads")
                fc1_at[i], fc2_at[i] = a1[ok[0]], a2[ok[0]]
        idx1 = fc1_at[:, None] + np.arange(row)[None, :]
        idx2 = fc2_at[:, None] + np.arange(row)[None, :]
        out = np.empty((len(new), 2 * g.d_model), np.float32)
        out[:, :g.d_model] = data[idx1].view(self.dtype).reshape(len(new), g.d_model)
        out[:, g.d_model:] = data[idx2].view(self.dtype).reshape(len(new), g.d_model)
        return out


def _one_blas_thread():
    """BLAS pinned to one thread (threadpoolctl, when installed): spinning BLAS threads on a
    2-core machine steal the CPU that completes the reads (measured: I/O p50 6.3 → 2.0 ms)."""
    import contextlib
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


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
    from ..data import bundled_model_dir, default_predictors_path
    from ..model.checkpoint import load_checkpoint
    from ..model.opt import OPTModel
    from ..model.predictor import PredictorSet, logit
    from ..model.sampling import check_top_p, next_token
    from ..model.sparse import SparseFFN
    from ..model.tokenizer import check_request, load_tokenizer, prompt_ids

    check_request(prompt_text, n_tokens)
    check_top_p(top_p)
    if threshold is not None:
        logit(threshold)
    folder = Path(model_dir) if model_dir is not None else bundled_model_dir()
    ckpt = load_checkpoint(folder)
    spec = ckpt.spec
    tok = load_tokenizer(folder)
    ids = prompt_ids(tok, spec, prompt_text, n_tokens)
    pred_path = Path(predictors) if predictors is not None else default_predictors_path(folder)
    preds = PredictorSet.load(pred_path)
    preds.check_geometry(ckpt.geometry, file=pred_path)
    store = WeightStore.open(store_path)
    source = FlashWeightSource(store, layout, ckpt, queue_depth=queue_depth,
                               record_reads=record_reads, allow_page_cache=allow_page_cache)
    blas = _one_blas_thread()
    try:
        blas.__enter__()
        model = OPTModel(ckpt)
        ffn = SparseFFN(preds, source, threshold=threshold)
        cache = model.new_cache(len(ids) + n_tokens)
        rng = np.random.default_rng(seed)
        fed: list[int] = []
        per_token: list[dict[str, Any]] = []
        token = ids[0]
        generated: list[int] = []
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
        predicted = [NeuronSets.from_lists(p) for p in source.predicted]
        reads = source.reads
    finally:
        blas.__exit__(None, None, None)
        source.close()
    gen_ids = np.asarray(generated[:n_tokens], np.int64)
    summary: dict[str, Any] = {
        "layout": layout.name, "queue_depth": int(queue_depth), "window": source.window,
        "store": str(store.path), "o_direct": source.reader.o_direct,
        "prompt_tokens": len(ids), "generated_tokens": int(n_tokens), "seed": int(seed),
        "top_p": top_p,
    }
    if per_token:
        for col in ("io_ms", "mem_ms", "compute_ms", "total_ms"):
            v = np.array([r[col] for r in per_token])
            summary[f"{col}_p50"] = float(np.percentile(v, 50))
            summary[f"{col}_p99"] = float(np.percentile(v, 99))
            summary[f"{col}_mean"] = float(v.mean())
        summary["bytes_per_token"] = float(np.mean([r["bytes_read"] for r in per_token]))
        summary["reads_per_token"] = float(np.mean([r["reads"] for r in per_token]))
    text = tok.decode([int(i) for i in gen_ids])
    return Generation(text, np.asarray(fed, np.int64), len(ids), gen_ids, per_token, summary,
                      predicted, reads)
