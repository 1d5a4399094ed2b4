"""Flash device: measured profiles, the SimPy reference model, its fast path, calibration."""

from __future__ import annotations

import os

from ..errors import InputError
from .base import DeviceModel, DeviceRun
from .profile import DeviceParams, DeviceProfile, load_params


def make_device(profile_or_params: DeviceProfile | DeviceParams | dict | str | os.PathLike,
                engine: str = "fast"):
    """A device model from a profile (object or YAML path) or parameters; engine fast | des.
    A profile whose `correction` is measured-residual gives the layered model times its
    measured residual (residual.py); bare parameters give the layered model."""
    # each engine is imported when first made: the CLI imports this package to build its
    # parser, and numba (the fast engine) takes 0.15-0.3 s to import
    if isinstance(profile_or_params, DeviceModel):
        return profile_or_params
    profile = profile_or_params
    if isinstance(profile, (str, os.PathLike)):
        profile = DeviceProfile.load(profile)
    params = load_params(profile)
    if engine == "fast":
        from .fast import FastDevice
        device = FastDevice(params)
    elif engine == "des":
        from .des import FlashDevice
        device = FlashDevice(params)
    else:
        raise InputError(f"unknown device engine {engine!r}", key="engine",
                         expected="fast or des")
    if isinstance(profile, DeviceProfile) and profile.correction == "measured-residual":
        from .predict import corrected_device
        from .residual import CorrectedDevice
        device = CorrectedDevice(device, corrected_device(params, profile.points,
                                                         profile.throttle).residual)
    if isinstance(profile, DeviceProfile) and profile.throttle is not None:
        from .throttle import ThrottledDevice
        device = ThrottledDevice(device, profile.throttle)
    # the after-compute cost of a batch travels with the model made from the profile
    device.interleave = profile.interleave if isinstance(profile, DeviceProfile) else None
    device.decode_wait = profile.decode_wait if isinstance(profile, DeviceProfile) else None
    # how much cheaper reads are over a small span (a plan's file) than over the
    # calibration's whole file: applied per plan (span.at_span)
    device.span = profile.span if isinstance(profile, DeviceProfile) else None
    return device

__all__ = ["DeviceParams", "DeviceProfile", "DeviceRun", "load_params", "make_device"]
