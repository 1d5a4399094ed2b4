"""Time the flash runtime's memory management (`DramManager`) per (token, layer), no disk.

The manager runs exactly as in `FlashWeightSource._step`: `prepare` (window step, read
derivation), then `store` (decode + row copies), each between two perf_counter calls. The
read is replaced, untimed, by copying its bytes into one kept buffer (the reader's
`reuse_buffer`) and a wait: in the runtime `store` follows a blocking read and `prepare`
follows the layer's compute, so the manager starts with caches others have used; without
the waits it would be timed hot, several times faster than the runtime. Neuron sets: the
bundled training trace's predicted sets when the geometry is the bundled model's; else
SYNTHETIC sets (random ids, 1–10 % of the layer, persisting between tokens) on two layers
of the geometry, named as such.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

import numpy as np

from ..data import TRAINING_TRACE
from ..geometry import ModelGeometry
from ..layout.dram import DramManager
from ..layout.registry import make_layout
from ..progress import progress
from ..trace.format import ActivationTrace

LAYOUTS = ("sparse", "bundled", "windowed+bundled", "coactivation")
GAPS_BYTES = (0, 64 << 10, 256 << 10)
BUFFER_BYTES = 64 << 20
WEIGHT_STD = 0.02  # the read bytes: fp16 values of this spread, like trained weights
WAIT_S = 100e-6  # untimed, before prepare and before store: what the read and compute yield
WARM_TOKENS = 16  # untimed first positions: the windows fill
TIMED_TOKENS = 96


@dataclass
class MemorySamples:
    """Per timed (token, layer): seconds and the counts that drive them."""

    seconds: np.ndarray
    loaded: np.ndarray
    reads: np.ndarray
    read_bytes: np.ndarray
    moved_rows: np.ndarray  # leaving rows overwritten (rows inserted are `loaded`)


def merge_samples(parts: list[MemorySamples]) -> MemorySamples:
    """Every part's (token, layer) samples in one set."""
    return MemorySamples(*(np.concatenate([getattr(p, f.name) for p in parts])
                           for f in fields(MemorySamples)))


def time_manager(manager: DramManager, sets: Iterator[tuple[int, int, np.ndarray]],
                 n_warm: int) -> MemorySamples:
    """Run the manager over (token, layer, ids) in order; time tokens from `n_warm` on."""
    rng = np.random.default_rng(0)
    # weight-like fp16 values: random bytes would be 1/32 subnormal, whose rescale in the
    # decode costs a microcode assist each (weights hardly have any)
    source = (rng.standard_normal(BUFFER_BYTES // 2, dtype=np.float32) * WEIGHT_STD
              ).astype(np.float16).view(np.uint8)
    kept = np.zeros(BUFFER_BYTES, dtype=np.uint8)  # the reader's reused buffer
    at = 0
    rows: list[tuple[float, int, int, int, int]] = []
    for token, layer, ids in sets:
        time.sleep(WAIT_S)  # the layer's compute
        t0 = time.perf_counter()
        step, off, length = manager.prepare(token, layer, ids)
        t1 = time.perf_counter()
        n = int(length.sum())
        if at + n > BUFFER_BYTES:
            at = 0
        data = kept[:n]  # stands for the read: untimed, as I/O is in the runtime
        data[:] = source[at:at + n]
        at += n
        time.sleep(WAIT_S)
        t2 = time.perf_counter()
        manager.store(layer, step, off, length, data)
        t3 = time.perf_counter()
        if token >= n_warm:
            rows.append(((t1 - t0) + (t3 - t2), len(step.new), len(off), n,
                         step.evict.n_rows))
    a = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return MemorySamples(*(a[:, i] for i in range(5)))


def _trace_sets(trace: ActivationTrace, n_tokens: int) -> Iterator[tuple[int, int, np.ndarray]]:
    for t in range(min(n_tokens, trace.n_tokens)):
        for layer, s in enumerate(trace.predicted):
            yield t, layer, s[t].astype(np.int64)


def _synthetic_sets(g: ModelGeometry, n_tokens: int, seed: int
                    ) -> Iterator[tuple[int, int, np.ndarray]]:
    """SYNTHETIC: per layer a set of 1–10 % of the neurons, half of it kept token to token."""
    rng = np.random.default_rng(seed)
    current = [np.zeros(0, np.int64) for _ in range(g.n_layers)]
    for t in range(n_tokens):
        for layer in range(g.n_layers):
            n = int(g.d_ffn * rng.uniform(0.01, 0.10))
            keep = current[layer][rng.random(len(current[layer])) < 0.5]
            fresh = rng.choice(g.d_ffn, n, replace=False)
            current[layer] = np.unique(np.concatenate([keep, fresh]))[:max(n, 1)]
            yield t, layer, current[layer]


def time_memory_management(geometry: ModelGeometry) -> tuple[MemorySamples, str]:
    """Samples over every calibration layout and gap, and a line saying what was run."""
    trace = ActivationTrace.load(TRAINING_TRACE)
    real = trace.geometry.mismatch(geometry) is None
    g = geometry if real else replace(geometry, n_layers=min(geometry.n_layers, 2))
    n_steps = WARM_TOKENS + TIMED_TOKENS
    parts = []
    names = LAYOUTS if real else tuple(n for n in LAYOUTS if "coactivation" not in n)
    runs = [(name, gap) for name in names for gap in GAPS_BYTES]
    for name, gap in progress(runs, total=len(runs), desc="memory calibration", unit="layout"):
        layout = make_layout(name, train_trace=trace if real else None, merge_gap_bytes=gap)
        sets = _trace_sets(trace, n_steps) if real else _synthetic_sets(g, n_steps, 0)
        parts.append(time_manager(DramManager(layout, g, _dtype(g)), sets, WARM_TOKENS))
    merged = merge_samples(parts)
    what = (f"{', '.join(names)}; gaps 0, 64 and 256 KiB; {TIMED_TOKENS} tokens of "
            + (f"{TRAINING_TRACE.name}" if real else "SYNTHETIC neuron sets on 2 layers"))
    return merged, what


def _dtype(g: ModelGeometry) -> np.dtype:
    return np.dtype({2: np.float16, 4: np.float32}[g.dtype_bytes])
