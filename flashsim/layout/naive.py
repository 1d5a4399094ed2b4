"""Naive and hybrid baselines: the whole FFN (or its flash share) read every token.

The file is the split placement (fc1 rows, then fc2 columns, per layer). With
`dram_fraction` f the first round(f · d_ffn) neurons of every layer live in DRAM (the
paper's "hybrid", f = 0.5) and the rest is read per token in sequential reads of at most
`chunk_bytes`. The runtime multiplies the dense FFN; there is no memory management.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import ModelGeometry, NeuronSets
from ..trace.format import ActivationTrace
from .base import Layout, build_plan, check_trace
from .placement import Placement, split_placement
from .plan import IOPlan


class NaiveLayout(Layout):
    """Dense loading in big sequential chunks; `dram_fraction` of each layer stays in DRAM."""

    dense_ffn = True

    def __init__(self, *, dram_fraction: float = 0.0, chunk_bytes: int = 1 << 20,
                 name: str | None = None, **kwargs: Any) -> None:
        if not 0.0 <= dram_fraction < 1.0:
            raise InputError(f"DRAM fraction {dram_fraction} is outside [0, 1)",
                             key="dram_fraction", expected="0 ≤ fraction < 1")
        kwargs.setdefault("max_read_bytes", chunk_bytes)
        super().__init__(**kwargs)
        self.dram_fraction = float(dram_fraction)
        self.name = name or ("naive" if dram_fraction == 0 else "hybrid")

    def params(self) -> dict[str, Any]:
        return {**super().params(), "dram_fraction": self.dram_fraction}

    def placement(self, geometry: ModelGeometry) -> Placement:
        return split_placement(geometry, self.block_bytes)

    def dram_neurons(self, geometry: ModelGeometry) -> int:
        """Neurons 0..n of every layer that live in DRAM."""
        return int(round(self.dram_fraction * geometry.d_ffn))

    def read_ranges(self, layer: int, loads: NeuronSets, placement: Placement
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per token, whatever the neurons: fc1 rows n_dram.. and fc2 columns n_dram.. of the
        layer (two contiguous spans, cut into chunks by `merge_reads`)."""
        g = placement.geometry
        n_dram = self.dram_neurons(g)
        tok = np.repeat(np.arange(len(loads), dtype=np.int64), 2)
        span = np.array([placement.fc1_offset_bytes[layer, n_dram],
                         placement.fc2_offset_bytes[layer, n_dram]], dtype=np.int64)
        start = np.tile(span, len(loads))
        return tok, start, start + (g.d_ffn - n_dram) * g.row_bytes

    def plan(self, trace: ActivationTrace, *, which: str = "predicted",
             geometry: ModelGeometry | None = None) -> IOPlan:
        """Every generated token reads all flash-resident FFN rows (the sets are not used)."""
        _, tokens = check_trace(trace, "active", geometry)
        g = trace.geometry
        T, L, d = len(tokens), g.n_layers, g.d_ffn
        n_dram = self.dram_neurons(g)
        no_sets = NeuronSets(np.zeros(T + 1, dtype=np.int64), np.zeros(0, dtype=np.int32))
        ones = np.ones((T, L), np.int64)
        return build_plan(self, trace, self.placement(g), tokens, [no_sets] * L,
                          ones * (d - n_dram), ones * n_dram, ones * 0, ones * d,
                          which="dense", meta={"dram_neurons_per_layer": n_dram})
