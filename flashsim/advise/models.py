"""The memory and compute models a search charges per token, chosen once for all plans.

The same models `flashsim simulate` uses (cost/simulate.py): memory management calibrated on
this machine (or the paper's bytes moved over a memcpy bandwidth), the decode's compute
calibrated on this machine; either can be left out ("none") to rank by the rest alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cost.compute import ComputeModel, calibrate_compute
from ..cost.memcpy import measure_memcpy_bytes_per_s
from ..cost.memory import MemoryModel, calibrate_memory
from ..cost.simulate import context_tokens
from ..errors import InputError
from ..geometry import ModelGeometry
from ..layout.plan import IOPlan

CHOICES = ("calibrate", "none")


@dataclass(frozen=True)
class CostModels:
    """Memory and compute models (None: that part is not counted) and the memcpy bandwidth
    the dense layouts' bytes moved go over (they have no per-neuron memory management)."""

    memory: MemoryModel | None
    compute: ComputeModel | None
    memcpy_bytes_per_s: float

    def describe(self) -> dict[str, Any]:
        return {"memory": "not counted" if self.memory is None else self.memory.source,
                "compute": "not counted" if self.compute is None else self.compute.source,
                "memcpy_bytes_per_s": self.memcpy_bytes_per_s}

    def per_token_s(self, layout: Any, plan: IOPlan) -> tuple[np.ndarray, np.ndarray]:
        """(memory, compute) seconds per planned token, as `simulate` charges them."""
        zeros = np.zeros(plan.n_tokens)
        if self.memory is None:
            mem = zeros
        elif getattr(layout, "dense_ffn", False):
            mem = plan.mem_moved_bytes.sum(axis=1) / self.memcpy_bytes_per_s
        else:
            mem = self.memory.seconds(plan)
        if self.compute is None:
            return mem, zeros
        computed = plan.computed_neurons
        if computed is None:
            computed = plan.neurons_loaded
        return mem, self.compute.seconds(computed, context_tokens(plan))


def cost_models(geometry: ModelGeometry, *, memory: Any = "calibrate",
                compute: Any = "calibrate",
                memcpy_bytes_per_s: float | None = None) -> CostModels:
    """The models of the choices: "calibrate" (timed on this machine; with
    `memcpy_bytes_per_s` the memory is the paper's bytes-over-bandwidth model instead),
    "none", or a MemoryModel / ComputeModel used as given."""
    for key, value, cls in (("memory", memory, MemoryModel), ("compute", compute, ComputeModel)):
        if not isinstance(value, cls) and value not in CHOICES:
            raise InputError(f"{value!r} is not a {key} model", key=key,
                             expected="calibrate, none, or a model object")
    if memcpy_bytes_per_s is not None and not memcpy_bytes_per_s > 0:
        raise InputError(f"memcpy bandwidth {memcpy_bytes_per_s} must be positive",
                         key="memcpy_bytes_per_s")
    if memory == "calibrate":
        memory = (MemoryModel.memcpy(memcpy_bytes_per_s) if memcpy_bytes_per_s
                  else calibrate_memory(geometry))
    if compute == "calibrate":
        compute = calibrate_compute(geometry)
    bw = memcpy_bytes_per_s or measure_memcpy_bytes_per_s(2 * geometry.row_bytes)
    return CostModels(None if memory == "none" else memory,
                      None if compute == "none" else compute, float(bw))
