"""A fault probe: what a page fault costs T faulting threads now, against what the device
profile's model says the same reads cost.

The profile was measured with the AIO reader: one thread submitting, its host work on one
CPU. An mmap gather's reads are page faults taken by T threads, each fault's kernel work
(allocate, charge and reclaim under the cgroup's limit, map) on the faulting thread, T
threads sharing the machine's CPUs. The probe gathers every page of the store once, in
random order, cut into sorted batches as a sparse gather's are (T contiguous shares),
inside the memory cgroup at the run's smallest budget with MADV_RANDOM (one read a fault),
cold and warm; a batch's fault time is its cold gather less its warm one. The
profile's model times the same reads (one 4 KiB read a page, each thread its own share).
PROBE_PASSES passes right before and right after each row block, at its thread count:
their mean ratio scales that block's I/O, so it follows the disk's and the CPUs' speed
over the run's minutes as the rows see them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..device.span import at_span
from ..layout.mmap import MmapLayout, share_bounds
from ..loader.store import WeightStore

PROBE_BATCH_PAGES = 128
"""Pages (faults) a probe batch gathers: a sparse batch of the bundled model faults tens
to hundreds of pages."""
PROBE_PASSES = 3
"""Cold passes on either side of a row block: one pass is ~1 k faults, tens of ms."""
PROBE_SEED = 2024
"""The pages' order: the same probe in every run."""


@dataclass
class FaultProbe:
    """The probe's store, layout per thread count, batches, and what it measured."""

    store: WeightStore
    layouts: dict[int, MmapLayout]
    rows: list[np.ndarray]
    warm_s: dict[int, np.ndarray] = field(default_factory=dict)
    major_faults: dict[int, list[int]] = field(default_factory=dict)
    factors: dict[int, list[float]] = field(default_factory=dict)

    @classmethod
    def for_run(cls, store: WeightStore, layout: MmapLayout, qds: list[int],
                budget_bytes: int) -> FaultProbe:
        """A probe of `store` (mapped as `layout` places it) at each of `qds` threads."""
        g = store.geometry
        rows_per_page = max(layout.block_bytes // g.row_bytes, 1)
        n_pages = layout.placement(g).file_bytes // layout.block_bytes
        order = np.random.default_rng(PROBE_SEED).permutation(n_pages)
        rows = [np.sort(order[i:i + PROBE_BATCH_PAGES]) * rows_per_page
                for i in range(0, n_pages, PROBE_BATCH_PAGES)]
        layouts = {int(q): MmapLayout(pattern=layout.pattern, budget_bytes=budget_bytes,
                                      readahead_bytes=0, threads=int(q),
                                      bundled=layout.bundled) for q in qds}
        return cls(store, layouts, rows)

    def measure(self, threads: int) -> np.ndarray:
        """Every probe batch's fault seconds at `threads`, now: a cold pass less the warm
        one (measured the first time)."""
        from .mmap import measure_gathers  # mmap.py runs the probe: imported when measured

        lay = self.layouts[threads]
        if threads not in self.warm_s:
            self.warm_s[threads] = measure_gathers(self.store, lay, self.rows, "random",
                                                   warm=True)[0]
        cold, seen = measure_gathers(self.store, lay, self.rows, "random")
        self.major_faults.setdefault(threads, []).append(int(seen["major_faults"]))
        return cold - self.warm_s[threads]

    def measure_passes(self, threads: int) -> list[np.ndarray]:
        """PROBE_PASSES passes' fault seconds at `threads`, one after another."""
        return [self.measure(threads) for _ in range(PROBE_PASSES)]

    def predicted_s(self, device: Any, threads: int) -> np.ndarray:
        """The model's time of every probe batch: a 4 KiB read a page, each of `threads`
        workers issuing its own contiguous share of the batch's pages."""
        lay = self.layouts[threads]
        block = lay.block_bytes
        rows_per_page = max(block // self.store.geometry.row_bytes, 1)
        pages = [r // rows_per_page for r in self.rows]
        ptr = np.concatenate([[0], np.cumsum([len(p) for p in pages])]).astype(np.int64)
        off = np.concatenate(pages).astype(np.int64) * block
        shares = ptr[:-1, None] + share_bounds(np.diff(ptr), threads)
        file_bytes = lay.placement(self.store.geometry).file_bytes
        return np.asarray(at_span(device, file_bytes).run_batches(
            off, np.full(len(off), block, np.int64), ptr, threads, shares))

    def factor(self, device: Any, threads: int, fault_s: list[np.ndarray]) -> float:
        """The mean over passes of their fault seconds / the model's time of the reads."""
        model_s = float(self.predicted_s(device, threads).sum())
        ratio = float(np.mean([float(np.sum(f)) for f in fault_s])) / model_s
        self.factors.setdefault(threads, []).append(ratio)
        return ratio

    def info(self) -> dict[str, Any]:
        """What the report says about the probe."""
        n_pages = int(sum(len(r) for r in self.rows))
        return {"pages": n_pages, "batch_pages": PROBE_BATCH_PAGES,
                "budget_bytes": next(iter(self.layouts.values())).budget_bytes,
                "major_faults": {str(q): v for q, v in self.major_faults.items()},
                "factors": {str(q): v for q, v in self.factors.items()}}
