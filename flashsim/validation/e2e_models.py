"""The memory and compute models of an end-to-end run, timed in rounds between its decodes.

Both models are CPU timings of this machine, and a VM's CPU drifts like its disk: timed once
(as `simulate` does), the memory model of one run came out 0.25 ms a token and of the next
0.37 ms for the same decodes, which measured 0.28–0.35 ms. So one round of each timing runs
in every repetition, between the row blocks (memory before the first block, compute
half-way), and each model is fitted to the samples of all rounds: the models then sample
the CPU over the same minutes as the decodes they are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..cost.compute import ComputeModel
from ..cost.compute_decode import CALIBRATION_TEXT, DecodeTimings, fit_decode, time_decode
from ..cost.memory import fit_memory
from ..cost.memory_timing import MemorySamples, merge_samples, time_memory_management
from ..model.sparse import one_blas_thread
from .e2e_setup import EndToEndSetup
from .e2e_spec import EndToEndSpec
from .schedule import Slot


def merged_timings(rounds: list[DecodeTimings]) -> DecodeTimings:
    """Every round's timed positions in one set (a part missing from a round counts 0 s)."""
    names = sorted({k for r in rounds for k in r.parts})
    parts = {k: np.concatenate([r.parts.get(k, np.zeros(len(r.total_s))) for r in rounds])
             for k in names}
    return DecodeTimings(parts, np.concatenate([r.total_s for r in rounds]),
                         np.concatenate([r.context for r in rounds]),
                         np.concatenate([r.neurons for r in rounds]),
                         np.concatenate([r.sampled for r in rounds]))


@dataclass
class ModelRounds:
    """What the run times (memory, compute or both: those the caller did not give) and the
    rounds measured so far."""

    spec: EndToEndSpec
    setup: EndToEndSetup
    time_memory: bool
    time_compute: bool
    memory: list[MemorySamples] = field(default_factory=list)
    compute: list[DecodeTimings] = field(default_factory=list)
    memory_what: str = ""

    @classmethod
    def for_run(cls, spec: EndToEndSpec, setup: EndToEndSetup) -> ModelRounds | None:
        """The rounds for the models `spec.simulate_options` lacks (None: it has both)."""
        given = spec.simulate_options
        memory = not any(k in given for k in ("memory_model", "memcpy_bytes_per_s"))
        compute = "compute_model" not in given
        return cls(spec, setup, memory, compute) if memory or compute else None

    def measure_part(self, slot: Slot) -> None:
        """The timing that goes before `slot`: memory before a repetition's first block,
        compute before its middle one."""
        j, per_rep = slot.calibration_part
        if self.time_memory and j == 0:
            samples, self.memory_what = time_memory_management(self.setup.ckpt.geometry)
            self.memory.append(samples)
        if self.time_compute and j == per_rep // 2:
            with one_blas_thread():  # as the runtime decodes
                self.compute.append(time_decode(
                    self.spec.model_dir, prompt_tokens=self.setup.n_prompt_tokens,
                    n_tokens=self.spec.tokens, top_p=self.spec.top_p, seed=slot.rep))

    def models(self) -> dict[str, Any]:
        """`simulate_plan` keyword arguments: the models fitted to every round."""
        out: dict[str, Any] = {}
        if self.memory:
            out["memory_model"] = replace(fit_memory(merge_samples(self.memory)), source=(
                f"runtime memory management timed on this machine in {len(self.memory)} "
                f"rounds between the decodes ({self.memory_what}), least-absolute-deviation "
                "fit"))
        if self.compute:
            n = len(self.compute[0].total_s)
            out["compute_model"] = ComputeModel.from_parts(
                fit_decode(merged_timings(self.compute)),
                f"opt-decode: the sparse decode timed part by part in {len(self.compute)} "
                f"rounds between the decodes, {n} positions of {CALIBRATION_TEXT.name} each "
                f"(context 1-{n}), least-absolute-deviation fits")
        return out
