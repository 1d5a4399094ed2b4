"""Flash device: measured profiles, the SimPy reference model, its fast path, calibration."""

from __future__ import annotations

import os

from ..errors import InputError
from .base import DeviceRun
from .profile import DeviceParams, DeviceProfile, load_params


def make_device(profile_or_params: DeviceProfile | DeviceParams | dict | str | os.PathLike,
                engine: str = "fast"):
    """A device model from a profile (object or YAML path) or parameters; engine fast | des."""
    # each engine is imported when first made: the CLI imports this package to build its
    # parser, and numba (the fast engine) takes 0.15-0.3 s to import
    params = load_params(profile_or_params)
    if engine == "fast":
        from .fast import FastDevice
        return FastDevice(params)
    if engine == "des":
        from .des import FlashDevice
        return FlashDevice(params)
    raise InputError(f"unknown device engine {engine!r}", key="engine", expected="fast or des")


__all__ = ["DeviceParams", "DeviceProfile", "DeviceRun", "load_params", "make_device"]
