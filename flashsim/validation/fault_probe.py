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
from functools import cached_property
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
    """The probe's store, layout per thread count, batches of pages, and what it measured."""

    store: WeightStore
    layouts: dict[int, MmapLayout]
    pages: list[np.ndarray]
    rows_per_page: int
    warm_s: dict[int, np.ndarray] = field(default_factory=dict)
    major_faults: dict[int, list[int]] = field(default_factory=dict)
    factors: dict[int, list[float]] = field(default_factory=dict)

    @classmethod
    def for_run(cls, store: WeightStore, layout: MmapLayout, qds: list[int],
                budget_bytes: int) -> FaultProbe:
        """A probe of `store` (mapped as `layout` places it) at each of `qds` threads."""
        g = store.geometry
        n_pages = layout.placement(g).file_bytes // layout.block_bytes
        order = np.random.default_rng(PROBE_SEED).permutation(n_pages)
        pages = [np.sort(order[i:i + PROBE_BATCH_PAGES])
                 for i in range(0, n_pages, PROBE_BATCH_PAGES)]
        layouts = {int(q): MmapLayout(pattern=layout.pattern, budget_bytes=budget_bytes,
                                      readahead_bytes=0, threads=int(q),
                                      bundled=layout.bundled) for q in qds}
        return cls(store, layouts, pages, max(layout.block_bytes // g.row_bytes, 1))

    @cached_property
    def rows(self) -> list[np.ndarray]:
        """Each batch's rows: the first row of each of its pages."""
        return [p * self.rows_per_page for p in self.pages]

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

    def model_seconds(self, device: Any) -> dict[int, float]:
        """Per thread count, the model's time of all probe batches: a 4 KiB read a page,
        each worker issuing its own contiguous share of a batch's pages."""
        ptr = np.concatenate([[0], np.cumsum([len(p) for p in self.pages])]).astype(np.int64)
        out = {}
        for q, lay in self.layouts.items():
            block = lay.block_bytes
            off = np.concatenate(self.pages).astype(np.int64) * block
            shares = ptr[:-1, None] + share_bounds(np.diff(ptr), q)
            span = at_span(device, lay.placement(self.store.geometry).file_bytes)
            out[q] = float(np.sum(span.run_batches(off, np.full(len(off), block, np.int64),
                                                   ptr, q, shares)))
        return out

    def factor(self, model_s: float, threads: int, fault_s: list[np.ndarray]) -> float:
        """The mean over passes of their fault seconds / the model's time of the same reads
        (`model_s`, from model_seconds), kept for the report."""
        ratio = float(np.mean([float(np.sum(f)) for f in fault_s])) / model_s
        self.factors.setdefault(threads, []).append(ratio)
        return ratio

    def info(self) -> dict[str, Any]:
        """What the report says about the probe."""
        return {"pages": int(sum(len(p) for p in self.pages)), "batch_pages": PROBE_BATCH_PAGES,
                "budget_bytes": next(iter(self.layouts.values())).budget_bytes,
                "major_faults": {str(q): v for q, v in self.major_faults.items()},
                "factors": {str(q): v for q, v in self.factors.items()}}
