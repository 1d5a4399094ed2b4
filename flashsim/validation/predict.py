"""The model side of a validation run: the device model's per-token I/O time of each plan, as
many simulator passes as the real run had repetitions, each with its own per-read draws of
the model's command and transfer spreads (`cost.simulate.io_seconds_draws`); beside it the
interpolation baseline of the profile's measured points (`device.baseline`), which the model
has to beat."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..cost.simulate import io_seconds_draws
from ..device import load_params, make_device
from ..device.baseline import Baseline
from ..device.profile import DeviceParams, DevicePoint, DeviceProfile
from ..device.span import at_span
from ..device.throttle import SliceBudget, ThrottledDevice
from ..layout.plan import IOPlan
from .measure import SWITCH_WARMUP_S, SWITCH_WARMUP_TOKENS
from .schedule import token_blocks
from .spec import CalibrationOptions, ValidationSpec, profile_source


def given_profile(spec: CalibrationOptions) -> tuple[DeviceProfile | DeviceParams, dict[str, Any]]:
    """The profile the spec names (loaded; bare parameters stay parameters), and what the
    report says about it."""
    source = spec.profile
    if isinstance(source, (str, os.PathLike)):
        source = DeviceProfile.load(source)
    params = load_params(source)
    correction = source.correction if isinstance(source, DeviceProfile) else "none"
    return source, {"calibrated": False, "source": profile_source(spec.profile),
                    "correction": correction, "params": params.model_dump()}


def predict_token_s(plan: IOPlan, params: Any, queue_depth: int, draws: int,
                    model_engine: str = "fast", *, interleaved: bool = False,
                    gaps_s: np.ndarray | None = None) -> np.ndarray:
    """Predicted I/O seconds per (draw, token): layers one after another, as measured
    (`interleaved`: each batch after a decode's compute, as the real decode reads them;
    `gaps_s` [tokens, layers]: that compute, which behind a throttle renews its budget).
    Behind a throttle, a replay the way `validate` reads it (`throttled_replay_s`)."""
    device = make_device(params, model_engine)
    if isinstance(device, ThrottledDevice) and not interleaved:
        return throttled_replay_s(plan, device, queue_depth, draws)
    return io_seconds_draws(plan, device, queue_depth, draws, model_engine,
                            interleaved=interleaved, gaps_s=gaps_s).sum(axis=2)


def throttled_replay_s(plan: IOPlan, device: ThrottledDevice, queue_depth: int,
                       draws: int) -> np.ndarray:
    """Per (draw, token) I/O seconds of the replay behind a throttle: the budget carries
    from batch to batch, so the replay's order matters. Each block of tokens
    (`schedule.token_blocks`) is read after its warm-up tokens (`measure.warm_up`: the
    tokens before it, at least SWITCH_WARMUP_TOKENS and SWITCH_WARMUP_S) from a fresh slice,
    as `measure_rows` reads it (it leaves the group idle past its slice first): the kernel
    then holds the same tokens back in every repetition, and so does the model (draws
    differ by their reads' spreads only)."""
    device = at_span(device, plan.file_bytes)
    # each draw's batches without the throttle, with their own per-read spreads
    free = io_seconds_draws(plan, device.inner, queue_depth, draws).reshape(draws, -1)
    token_free = free[0].reshape(plan.n_tokens, plan.n_layers).sum(axis=1)
    out = np.zeros((draws, plan.n_tokens))
    for block in token_blocks(plan.n_tokens):
        # at most the warm-up the free times give: behind the throttle it ends sooner, as
        # measure.warm_up stops by the clock and a held token takes its slice's rest
        most = _warm_up_tokens(token_free, block.start)
        for d in range(draws):
            warm = most[:_warm_up_count(_tokens_from_fresh_slice(plan, device, most,
                                                                 free[d], queue_depth))]
            tokens = np.concatenate([warm, np.arange(block.start, block.stop)])
            made = _tokens_from_fresh_slice(plan, device, tokens, free[d], queue_depth)
            out[d, block.start:block.stop] = made[len(warm):]
    return out


def _tokens_from_fresh_slice(plan: IOPlan, device: ThrottledDevice, tokens: np.ndarray,
                             free_s: np.ndarray, queue_depth: int) -> np.ndarray:
    """Seconds of each of `tokens` (their layers' batches, in order) read behind the
    throttle from a fresh slice; `free_s`: every batch's time without it."""
    n_layers = plan.n_layers
    batches = (tokens[:, None] * n_layers + np.arange(n_layers)[None, :]).reshape(-1)
    index, sub_ptr = _gather(plan.batch_ptr, batches)
    made = device.sequence(plan.offset_bytes[index], plan.length_bytes[index], sub_ptr,
                           queue_depth, free_s[batches], budget=SliceBudget.of(device.throttle))
    return made.reshape(len(tokens), n_layers).sum(axis=1)


def _warm_up_count(token_s: np.ndarray) -> int:
    """How many of these tokens (in the order read) `measure.warm_up` reads: at least
    SWITCH_WARMUP_TOKENS, and on until SWITCH_WARMUP_S have gone by."""
    n, k, spent = len(token_s), 0, 0.0
    while k < SWITCH_WARMUP_TOKENS or (spent < SWITCH_WARMUP_S and k < n):
        spent += token_s[k]
        k += 1
    return min(k, n)


def _warm_up_tokens(token_s: np.ndarray, start: int) -> np.ndarray:
    """The tokens `measure.warm_up` reads before a block starting at `start`, in the
    order read (start - 1, start - 2, ..., wrapping), given every token's time."""
    n = len(token_s)
    order = (start - np.arange(1, n + 1)) % n
    return order[:_warm_up_count(token_s[order])]


def _gather(ptr: np.ndarray, batches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Read indices of `batches` (in order) and their batch pointer."""
    counts = ptr[batches + 1] - ptr[batches]
    sub_ptr = np.concatenate([[0], np.cumsum(counts)])
    index = np.repeat(ptr[batches] - sub_ptr[:-1], counts) + np.arange(sub_ptr[-1])
    return index, sub_ptr


def io_seconds_stream(plan: IOPlan, params: Any, queue_depth: int,
                      model_engine: str = "fast") -> float:
    """Predicted time of the whole plan as one stream at `queue_depth` (no layer barriers).

    What a fio replay of the plan's iolog measures (fio cannot wait between batches).
    """
    if plan.n_reads == 0:
        return 0.0
    device = make_device(params, model_engine)
    ptr = np.array([0, plan.n_reads], np.int64)
    device = at_span(device, plan.file_bytes)
    return float(np.asarray(device.run_batches(plan.offset_bytes, plan.length_bytes, ptr,
                                               queue_depth))[0])


def profile_baseline(spec: ValidationSpec, profile_info: dict[str, Any]) -> Baseline | None:
    """The interpolation baseline of the points the run's model was fitted to: the
    calibration's, or the given profile's; None for bare parameters (no points)."""
    if profile_info.get("calibrated"):
        return Baseline(DevicePoint.model_validate(p) for p in profile_info["points"])
    source = spec.profile
    if isinstance(source, DeviceProfile):
        return Baseline(source.points)
    if isinstance(source, (str, os.PathLike)):
        return Baseline(DeviceProfile.load(source).points)
    return None


def baseline_token_s(plan: IOPlan, baseline: Baseline, queue_depth: int) -> np.ndarray:
    """The baseline's I/O seconds per token: its batch makespans, layers one after another."""
    makespan = baseline.batch_makespan_s(plan.offset_bytes, plan.length_bytes, plan.batch_ptr,
                                         queue_depth)
    return makespan.reshape(plan.n_tokens, plan.n_layers).sum(axis=1)
