"""Flash device: measured profiles, the SimPy reference model, its fast path, calibration."""

from __future__ import annotations

import os

from .base import DeviceRun
from .profile import DeviceParams, DeviceProfile, load_params


def make_device(profile_or_params: "DeviceProfile | DeviceParams | dict | str | os.PathLike",
                engine: str = "fast"):
    """A device model from a profile (object or YAML path) or parameters; engine fast | des."""
    from ..errors import InputError

    params = load_params(profile_or_params)
    if engine == "fast":
        from .fast import FastDevice
        return FastDevice(params)
    if engine == "des":
        from .des import FlashDevice
        return FlashDevice(params)
    raise InputError(f"unknown device engine {engine!r}", key="engine", expected="fast or des")


__all__ = ["DeviceParams", "DeviceProfile", "DeviceRun", "load_params", "make_device"]
