"""What a decode from flash pays for waiting on its reads in its compute, beyond the compute
model of a decode from DRAM.

The runtime's reads are synchronous: while a layer's batch is in flight the decoding thread
blocks, and on a virtual machine its vCPU idles. The compute after the batch then runs
slower: the core comes back with its caches, TLB and branch predictors refilled by others.
Measured here: a decode from DRAM with a 500 µs sleep before each layer's FFN computes
1.5-1.9x slower (sleep excluded), with a 500 µs busy wait 1.05x; the decode from flash
computes 1.2-1.6x slower than from DRAM. (The batch's own after-compute cost is the device
profile's `interleave`, device/interleave.py.)

`DecodeWaitCost` adds to a token's compute, over its non-empty batches:
compute_per_batch_s · batches + compute_per_io_s · (the token's I/O seconds).
It is calibrated from real decodes from flash of a calibration text
(`validation.wait_calibration`) and kept in the device profile (`decode_wait`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DecodeWaitCost:
    """Extra compute per non-empty batch (s) and per second waited on reads (s/s)."""

    compute_per_batch_s: float
    compute_per_io_s: float
    source: str = ""
    calibration: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("compute_per_batch_s", "compute_per_io_s"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number ≥ 0, not {value!r}")

    def compute_s(self, io_s: np.ndarray, nonempty: np.ndarray) -> np.ndarray:
        """Extra compute seconds per token from its batches' I/O seconds and which of them
        read anything ([n_tokens, n_layers] both)."""
        busy = np.asarray(nonempty, np.float64)
        return (self.compute_per_batch_s * busy.sum(axis=1)
                + self.compute_per_io_s * (np.asarray(io_s) * busy).sum(axis=1))

    def to_dict(self) -> dict[str, Any]:
        """The profile's `decode_wait` section (device.profile.DecodeWaitInfo)."""
        return {"compute_per_batch_us": round(self.compute_per_batch_s * 1e6, 3),
                "compute_per_io_s": round(self.compute_per_io_s, 5), "source": self.source,
                "calibration": self.calibration}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecodeWaitCost:
        return cls(float(data["compute_per_batch_us"]) * 1e-6,
                   float(data["compute_per_io_s"]), str(data.get("source", "")),
                   dict(data.get("calibration") or {}))


PROFILE = "profile"
"""`wait_cost` argument: the device profile's measured `decode_wait`, when it has one."""


def resolve_wait_cost(wait_cost: DecodeWaitCost | str | None, profile: Any
                      ) -> DecodeWaitCost | None:
    """The wait cost to simulate with: as given, none (None), or the profile's (PROFILE: a
    profile's or a device's `decode_wait` section; None when it was not measured)."""
    if wait_cost is None or isinstance(wait_cost, DecodeWaitCost):
        return wait_cost
    if wait_cost != PROFILE:
        raise ValueError(f"wait_cost must be a DecodeWaitCost, None or {PROFILE!r}")
    info = getattr(profile, "decode_wait", None)
    if info is None:
        return None
    return DecodeWaitCost.from_dict(info.model_dump() if hasattr(info, "model_dump")
                                    else dict(info))
