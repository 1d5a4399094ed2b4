"""Predictor-driven layouts: sparse, bundled, windowed and windowed+bundled.

- sparse: every token reads its neurons' fc1 rows and fc2 columns, two reads per neuron from
  the two matrices of a split file (nothing is kept between tokens);
- bundled: the same neurons, one read of a [fc1 row | fc2 col] record each;
- windowed (+bundled): neurons used by the last k tokens stay in DRAM, only the increment is
  read (see `window.py`); an optional DRAM budget for the whole FFN cache (all layers)
  shrinks a layer's window when it would be exceeded, deciding layer by layer with only
  what a runtime knows at that point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import ModelGeometry, NeuronSets
from ..trace.format import ActivationTrace
from .base import Layout, build_plan, check_trace, unit_batch_reads, unit_ranges
from .placement import Placement, bundled_placement, split_placement
from .plan import IOPlan
from .window import Residency, check_window


class SparseLayout(Layout):
    """Loads the predicted (or active) neurons; `bundled` and `window` pick the variant."""

    def __init__(self, *, bundled: bool = False, window: int | None = None,
                 dram_budget_bytes: int | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        window = check_window(window)
        if dram_budget_bytes is not None and dram_budget_bytes <= 0:
            raise InputError(f"DRAM budget {dram_budget_bytes} must be positive",
                             key="dram_budget_bytes")
        if dram_budget_bytes is not None and window is None:
            raise InputError("a DRAM budget needs a window", key="dram_budget_bytes",
                             expected="--window together with --dram-budget")
        self.bundled = bool(bundled)
        self.window = window
        self.dram_budget_bytes = dram_budget_bytes
        default = {(False, False): "sparse", (True, False): "bundled",
                   (False, True): "windowed", (True, True): "windowed+bundled"}
        self.name = name or default[(self.bundled, self.window is not None)]

    def params(self) -> dict[str, Any]:
        return {**super().params(), "bundled": self.bundled, "window": self.window,
                "dram_budget_bytes": self.dram_budget_bytes}

    def placement(self, geometry: ModelGeometry) -> Placement:
        if self.bundled:
            return bundled_placement(geometry, self.block_bytes)
        return split_placement(geometry, self.block_bytes)

    def read_units(self, layer: int, loads: NeuronSets, placement: Placement) -> NeuronSets:
        """Which records to read for the neurons to load: the loads themselves, unless the
        placement carries friend copies (see coactivation)."""
        return loads

    def reads_own_records(self, placement: Placement) -> bool:
        return placement.friend is None  # `read_units` is the identity

    def batch_reads(self, layer: int, loads: np.ndarray, placement: Placement
                    ) -> tuple[np.ndarray, np.ndarray]:
        """One batch's reads; without friend copies in one kernel call (`unit_batch_reads`,
        the plan's kernels), as the runtime steps every (token, layer)."""
        if not self.reads_own_records(placement):
            return super().batch_reads(layer, loads, placement)
        return unit_batch_reads(self, layer, loads, placement)

    def read_ranges(self, layer: int, loads: NeuronSets, placement: Placement
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The records of the neurons to load, at the placement's offsets."""
        return unit_ranges(layer, self.read_units(layer, loads, placement), placement)

    def residency(self, geometry: ModelGeometry) -> Residency:
        """Per-layer DRAM residency: the window (none: nothing kept) and the DRAM budget."""
        budget_rows = None
        if self.dram_budget_bytes is not None:
            budget_rows = int(self.dram_budget_bytes // (2 * geometry.row_bytes))
        return Residency(geometry.n_layers, geometry.d_ffn, self.window,
                         budget_rows=budget_rows)

    def plan(self, trace: ActivationTrace, *, which: str = "predicted",
             geometry: ModelGeometry | None = None) -> IOPlan:
        """The IOPlan of the generated tokens of `trace`, loading the `which` neuron sets."""
        sets, tokens = check_trace(trace, which, geometry)
        g = trace.geometry
        results = self.residency(g).replay(sets, int(tokens[0]))
        loads = [w.loads for w in results]
        loaded = np.stack([ld.counts() for ld in loads], axis=1)
        resident = np.stack([w.resident_neurons for w in results], axis=1)
        moved = np.stack([w.moved_rows for w in results], axis=1)
        meta: dict[str, Any] = {}
        if self.window is not None:
            meta["window_per_token"] = np.stack([w.window for w in results], axis=1)
        # the paper's runtime multiplies every resident row
        return build_plan(self, trace, self.placement(g), tokens, loads, loaded, resident,
                          moved, resident.copy(), which=which, meta=meta)
