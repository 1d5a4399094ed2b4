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
from ..trace.format import ActivationTrace
from ..geometry import ModelGeometry, NeuronSets
from .base import Layout, build_plan, check_trace
from .placement import Placement, bundled_placement, split_placement
from .plan import IOPlan
from .window import run_windows


class SparseLayout(Layout):
    """Loads the predicted (or active) neurons; `bundled` and `window` pick the variant."""

    def __init__(self, *, bundled: bool = False, window: int | None = None,
                 dram_budget_bytes: int | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if window is not None and (isinstance(window, bool) or int(window) != window
                                   or window < 1):
            raise InputError(f"window {window} must be at least 1 token", key="window",
                             expected="an integer ≥ 1")
        if dram_budget_bytes is not None and dram_budget_bytes <= 0:
            raise InputError(f"DRAM budget {dram_budget_bytes} must be positive",
                             key="dram_budget_bytes")
        if dram_budget_bytes is not None and window is None:
            raise InputError("a DRAM budget needs a window", key="dram_budget_bytes",
                             expected="--window together with --dram-budget")
        self.bundled = bool(bundled)
        self.window = None if window is None else int(window)
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
        """Which records to read for the neurons to load (identity here; see coactivation)."""
        return loads

    def plan(self, trace: ActivationTrace, *, which: str = "predicted",
             geometry: ModelGeometry | None = None) -> IOPlan:
        """The IOPlan of the generated tokens of `trace`, loading the `which` neuron sets."""
        sets, tokens = check_trace(trace, which, geometry)
        g = trace.geometry
        placement = self.placement(g)
        T, L = len(tokens), g.n_layers
        first = int(tokens[0])
        loaded = np.zeros((T, L), np.int64)
        resident = np.zeros((T, L), np.int64)
        moved = np.zeros((T, L), np.int64)
        computed = np.zeros((T, L), np.int64)
        loads: list[NeuronSets] = []
        meta: dict[str, Any] = {}
        windows = []
        budget_rows = None
        if self.dram_budget_bytes is not None:
            budget_rows = int(self.dram_budget_bytes // (2 * g.row_bytes))
        results = None
        if self.window is not None:
            results = run_windows(sets, g.d_ffn, first, self.window, budget_rows=budget_rows)
        for l, s in enumerate(sets):
            if results is None:  # predictor only: read every neuron every token
                ld = s.slice_tokens(first, trace.n_tokens)
                n = ld.counts()
                resident[:, l] = moved[:, l] = computed[:, l] = n
            else:
                w = results[l]
                ld = w.loads
                resident[:, l] = computed[:, l] = w.resident_neurons
                moved[:, l] = w.moved_rows
                windows.append(w.window)
            loaded[:, l] = ld.counts()
            loads.append(ld)
        if windows:
            meta["window_per_token"] = np.stack(windows, axis=1)
        units = [self.read_units(l, ld, placement) for l, ld in enumerate(loads)]
        return build_plan(self, trace, placement, tokens, units, loaded, resident, moved,
                          computed, which=which, meta=meta)
