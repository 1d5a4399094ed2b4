"""Per-token cost of an IOPlan: I/O (device model), memory management (memcpy), compute."""

from .compute import ComputeModel, calibrate_compute
from .memcpy import measure_memcpy_bytes_per_s
from .simulate import simulate

__all__ = ["ComputeModel", "calibrate_compute", "measure_memcpy_bytes_per_s", "simulate"]
