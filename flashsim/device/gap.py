"""The merge gap as a cost decision: merge two reads when reading the bytes between them is
cheaper on the device than issuing a second read ("reading more than needed in bigger chunks
can pay", the paper's Sec. 3.2).

Layouts stay device-free (`merge_gap_bytes` defaults to 0 there: the paper-literal layouts);
the cost-aware entry points (`flashsim simulate` / `compare`, sweeps, `flashsim run`) take a
merge gap setting, `auto` by default, and resolve it here from the device profile and the
queue depth with `resolve_merge_gap`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InputError
from ..units import check_queue_depth, format_size, parse_size
from .profile import DeviceParams, load_params

AUTO = "auto"
"""The merge gap setting that asks for the device's break-even gap."""

DEFAULT_MERGE_GAP = AUTO
"""The one default of every cost-aware entry point (the API's `simulate_layout`, `simulate` /
`compare`, sweeps, `flashsim run`), so the Python API and the CLI give the same numbers."""

LARGE_CHUNK_BYTES = 256 << 10
"""The second chunk size of the per-read cost line (the first is one block). One block is the
smallest read a plan issues (a lone row); 256 KiB spans the merged reads that gaps of a few
blocks produce with room to spare, and is wide enough that the model's stripe steps (reads up
to a 16-64 KiB stripe sit on one unit) average out, yet below where a fast device's per-read
time bends towards its link cap (~1 MiB on m1max-paper). On the bundled profiles the
break-even moves by < 5% at QD >= 8 between 128 KiB and 256 KiB."""

MergeGapSetting = Literal["auto"] | int
"""`"auto"` or a gap in bytes (0 = paper-literal: only touching reads merge)."""


@dataclass(frozen=True)
class BreakEven:
    """The steady-state per-read cost line t(chunk) = a + b·chunk at one queue depth and the
    break-even gap a / b it gives (floored to whole blocks, at least 0)."""

    gap_bytes: int
    per_read_us: float        # a: fixed time of one read
    per_kib_us: float         # b × 1024: time of one more KiB in a read
    queue_depth: int
    block_bytes: int
    chunks_bytes: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"gap_bytes": self.gap_bytes, "per_read_us": self.per_read_us,
                "per_kib_us": self.per_kib_us, "queue_depth": self.queue_depth,
                "block_bytes": self.block_bytes, "chunks_bytes": list(self.chunks_bytes)}


def _read_us(params: Any, chunk_bytes: int, queue_depth: int) -> float:
    """Steady-state device time per read (µs) of random `chunk_bytes` reads at `queue_depth`:
    chunk / predicted throughput (the model's own prediction, as calibration measures it)."""
    from .fit import predict_detail  # scipy and numba, 0.6-0.9 s: not for parsing a setting

    mb_s = predict_detail(params, int(chunk_bytes), int(queue_depth))["throughput_mb_s"]
    return chunk_bytes / mb_s  # bytes / (MB/s) = µs


@functools.lru_cache(maxsize=256)
def _break_even_cached(params_json: str, queue_depth: int, block_bytes: int) -> BreakEven:
    params = DeviceParams.model_validate_json(params_json)
    small, large = block_bytes, max(LARGE_CHUNK_BYTES, 4 * block_bytes)
    t_small = _read_us(params, small, queue_depth)
    t_large = _read_us(params, large, queue_depth)
    b = (t_large - t_small) / (large - small)  # µs per byte
    a = t_small - b * small                    # µs per read
    if a <= 0.0:
        gap = 0
    elif b <= 0.0:  # more bytes cost nothing here: merge as far as the line was drawn
        gap = large - 2 * small
    else:
        # a merged pair of one-block reads (2 blocks + gap) stays inside the line's span
        gap = min(int(a / b // small) * small, large - 2 * small)
    return BreakEven(gap_bytes=max(0, int(gap)), per_read_us=float(a),
                     per_kib_us=float(b * 1024), queue_depth=int(queue_depth),
                     block_bytes=int(block_bytes), chunks_bytes=(int(small), int(large)))


def _check(queue_depth: int, block_bytes: int) -> None:
    check_queue_depth(queue_depth)
    if block_bytes <= 0 or block_bytes & (block_bytes - 1):
        raise InputError(f"block size {block_bytes} is not a power of two", key="block_bytes",
                         expected="a power of two such as 512 or 4k")


def break_even(profile_or_params: Any, queue_depth: int, block_bytes: int) -> BreakEven:
    """The device's per-read cost line at `queue_depth` (from one block and 256 KiB reads)
    and its break-even merge gap; see `break_even_gap_bytes`."""
    _check(queue_depth, block_bytes)
    params = load_params(profile_or_params)
    return _break_even_cached(params.model_dump_json(), int(queue_depth), int(block_bytes))


def break_even_gap_bytes(profile_or_params: Any, queue_depth: int, block_bytes: int) -> int:
    """Largest gap worth reading through: at QD q a read costs ≈ a + b·chunk, so merging two
    reads g bytes apart saves a and costs b·g; returns floor(a/b / block) × block (≥ 0)."""
    return break_even(profile_or_params, queue_depth, block_bytes).gap_bytes


def parse_merge_gap(value: object, *, file: str | os.PathLike | None = None,
                    key: str = "merge_gap") -> MergeGapSetting:
    """`auto` (any case) or a size (`0`, `8k`, 16384) → "auto" or bytes; else an InputError."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        return parse_size(value, key=key, allow_zero=True,
                          file=None if file is None else str(file))
    except InputError:
        raise InputError(f"{value!r} is not a merge gap", file=file, key=key,
                         expected="auto, or a size such as 0, 8k or 16KiB") from None


@dataclass(frozen=True)
class GapChoice:
    """A resolved merge gap: the bytes, whether `auto` chose them, and its break-even."""

    gap_bytes: int
    auto: bool
    break_even: BreakEven | None = None

    def describe(self, device: str) -> str:
        """`12KiB (auto: break-even of local-virtio at QD 32)` / `0 (paper-literal, ...)`."""
        if self.auto and self.break_even is not None:
            return (f"{_size_text(self.gap_bytes)} (auto: break-even of {device} at QD "
                    f"{self.break_even.queue_depth})")
        if self.gap_bytes == 0:
            return "0 (paper-literal: no gap merging)"
        return f"{_size_text(self.gap_bytes)} (fixed)"

    def to_dict(self) -> dict[str, Any]:
        """JSON keys: merge_gap_bytes, merge_gap_auto, and merge_gap_break_even when auto."""
        out: dict[str, Any] = {"merge_gap_bytes": self.gap_bytes, "merge_gap_auto": self.auto}
        if self.break_even is not None:
            out["merge_gap_break_even"] = self.break_even.to_dict()
        return out


def _size_text(n_bytes: int) -> str:
    return format_size(n_bytes) if n_bytes else "0"


def resolve_merge_gap(setting: object, profile_or_params: Any, queue_depth: int,
                      block_bytes: int, *, key: str = "merge_gap") -> GapChoice:
    """The merge gap a run uses: the break-even of the device at `queue_depth` for `auto`
    (also None), else the given size."""
    value = AUTO if setting is None else parse_merge_gap(setting, key=key)
    if value == AUTO:
        be = break_even(profile_or_params, queue_depth, block_bytes)
        return GapChoice(be.gap_bytes, True, be)
    return GapChoice(int(value), False)
