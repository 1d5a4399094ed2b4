"""Per-token cost of an IOPlan: I/O (device model), memory management (memcpy), compute; and
the merge gap chosen from the device (gap.py)."""

from .compute import ComputeModel, calibrate_compute
from ..device.gap import (BreakEven, GapChoice, break_even, break_even_gap_bytes, parse_merge_gap,
                  resolve_merge_gap)
from .memcpy import measure_memcpy_bytes_per_s
from .simulate import simulate

__all__ = ["BreakEven", "ComputeModel", "GapChoice", "break_even", "break_even_gap_bytes",
           "calibrate_compute", "measure_memcpy_bytes_per_s", "parse_merge_gap",
           "resolve_merge_gap", "simulate"]
