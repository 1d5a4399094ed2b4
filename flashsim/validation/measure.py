"""The real side of a validation run: every (token, layer) batch of a plan read with the
`DirectReader` (O_DIRECT, exactly QD reads in flight), the wall time of its `read_batch`
call recorded (what a decode waits: the checks before the first read included); a token's
measured I/O time is the sum over its layers (layer l's reads start after layer l-1's)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..device.throttle import blkio_throttle_of
from ..io.reader import DirectReader, open_reader
from ..layout.plan import IOPlan
from ..loader.store import WeightStore
from ..progress import progress
from .schedule import RowKey, Slot
from .setup import Setup
from .spec import ValidationSpec

SWITCH_WARMUP_TOKENS = 2
"""At least this many tokens are read untimed before each block (see `warm_up`)."""
SWITCH_WARMUP_S = 0.02
"""...and at least this long: the disk's back end is slower for a while after a switch (or
any pause) and speeds up again as it is kept busy. Measured on naive after sparse blocks:
after 2 warm-up tokens (3 ms) a block's first timed tokens were still 8-15 % slower than
its later ones, which put naive's p99 at 1.31x its p50; after 20 ms the position effect
was gone and the p99 was 1.14x the p50."""


def measure_plan(reader: DirectReader, plan: IOPlan, queue_depth: int,
                 tokens: range | list[int] | None = None,
                 gap_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Measured wall time (s) of the `read_batch` call of every (token, layer) batch of
    `plan` (or of its `tokens`) and the time its first read waited to be issued, both of
    shape [tokens, n_layers].

    `gap_s` > 0: the device is left idle that long before every batch (empty ones too), as
    in a decode, where layer l's compute and layer l+1's predictor run between the batches
    (`idle_until`); the times exclude the gaps."""
    tokens = range(plan.n_tokens) if tokens is None else tokens
    n_layers = plan.n_layers
    out = np.zeros((len(tokens), n_layers))
    first = np.zeros((len(tokens), n_layers))
    ptr, off, length = plan.batch_ptr, plan.offset_bytes, plan.length_bytes
    last_end = time.perf_counter()
    for row, t in enumerate(tokens):
        for layer in range(n_layers):
            if gap_s > 0.0:
                idle_until(last_end + gap_s)
            b = t * n_layers + layer
            lo, hi = ptr[b], ptr[b + 1]
            if hi > lo:
                t0 = time.perf_counter()
                times = reader.read_batch(off[lo:hi], length[lo:hi], queue_depth)
                last_end = time.perf_counter()
                out[row, layer] = last_end - t0
                first[row, layer] = times.start_s.min()
            else:
                last_end = time.perf_counter()
    return out, first


def idle_until(deadline_s: float) -> None:
    """Busy-wait on the perf_counter clock until `deadline_s`.

    Not a sleep: the decode keeps a core busy with numpy between its batches and a busy wait
    does the same (a sleeping core may drop into a deeper idle state and wake slower for the
    next batch); a sleep also overshoots by the timer slack (50 µs by default on Linux),
    a sizeable part of the gaps reproduced (~0.1-1 ms). No read is in flight meanwhile
    (`read_batch` returns when its batch is done), so the wait takes no CPU from the reader."""
    while time.perf_counter() < deadline_s:
        pass


def warm_up(reader: DirectReader, plan: IOPlan, queue_depth: int, start: int,
            gap_s: float = 0.0) -> int:
    """Read the tokens before `start` untimed (start − 1, start − 2, …, wrapping) for at least
    SWITCH_WARMUP_TOKENS tokens and SWITCH_WARMUP_S seconds; return how many were read.

    A block follows another row or a calibration part (another QD, file or reader): the
    first token after such a switch is 35 % slower, and the slowdown fades only with the
    row's own reading (SWITCH_WARMUP_S), so it must not be charged to the block."""
    t0 = time.perf_counter()
    k = 0
    idle = {"gap_s": gap_s} if gap_s else {}  # without a gap: the plain call, as before
    while k < SWITCH_WARMUP_TOKENS or (time.perf_counter() - t0 < SWITCH_WARMUP_S
                                       and k < plan.n_tokens):
        k += 1
        measure_plan(reader, plan, queue_depth, [(start - k) % plan.n_tokens], **idle)
    return k


@dataclass
class Measured:
    """Per row, [reps, n_tokens] seconds: the I/O time and the first reads' issue waits."""

    io_s: dict[RowKey, np.ndarray]
    dispatch_s: dict[RowKey, np.ndarray]
    o_direct: bool
    reader_engine: str
    """The engine the readers used (what `auto` became)."""
    stores: list[str]


def open_readers(stores: list[WeightStore], reader_engine: str,
                 allow_page_cache: bool) -> dict[str, DirectReader]:
    """One reader per distinct store file, keyed by its path."""
    readers: dict[str, DirectReader] = {}
    try:
        for s in stores:
            if str(s.path) not in readers:
                readers[str(s.path)] = open_reader(s.path, reader_engine, allow_page_cache)
    except BaseException:
        close_readers(readers)
        raise
    return readers


def close_readers(readers: dict[str, DirectReader]) -> None:
    for reader in readers.values():
        reader.close()


def first_touch(readers: dict[str, DirectReader], setup: Setup, which: str) -> None:
    """Read two tokens of every row, not recorded: threads started, first-touch costs paid."""
    warm = setup.trace.head(2)
    for i, q in setup.keys:
        plan = setup.layouts[i].plan(warm, which=which)
        measure_plan(readers[str(setup.stores[i].path)], plan, q)


THROTTLE_IDLE_SLICES = 2.2
"""Behind a blk-throttle a block waits this many slices idle first: a group's slice ends at
most two slices after its last read, so its next read starts a fresh one."""


def throttle_idle_s(stores: list[WeightStore]) -> float:
    """How long to leave the disk idle before each block: behind a blk-throttle (the blkio
    group this process reads the stores in), long enough that the block starts a fresh slice
    (a state the model can know, where the budget the row or calibration before left is
    not); 0 without a throttle."""
    caps = [blkio_throttle_of(s.path) for s in stores]
    return max((THROTTLE_IDLE_SLICES * c.slice_ms * 1e-3 for c in caps if c is not None),
               default=0.0)


BeforeBlock = Callable[[Slot, str], None]
"""Called before each slot's block with the slot and the readers' engine (the calibration)."""


def measure_rows(spec: ValidationSpec, setup: Setup, slots: list[Slot],
                 before_block: BeforeBlock | None = None) -> Measured:
    """Read every slot's block in order (each after `before_block`, behind a throttle an
    idle wait (`throttle_idle_s`), and a `warm_up`)."""
    readers = open_readers(setup.stores, spec.reader_engine, spec.allow_page_cache)
    gap_s = spec.batch_gap_s  # idle before each batch (measure_plan)
    idle = {"gap_s": gap_s} if gap_s else {}
    fresh_slice_s = throttle_idle_s(setup.stores)
    try:
        engine = next(iter(readers.values())).engine
        shape = {k: (spec.reps, setup.plans[k[0]].n_tokens) for k in setup.keys}
        io_s = {k: np.zeros(shape[k]) for k in setup.keys}
        dispatch_s = {k: np.zeros(shape[k]) for k in setup.keys}
        first_touch(readers, setup, spec.which)
        for slot in progress(slots, total=len(slots), desc="validate", quiet=spec.quiet):
            if before_block is not None:
                before_block(slot, engine)
            i, q = slot.key
            reader, block = readers[str(setup.stores[i].path)], slot.tokens
            if fresh_slice_s:
                time.sleep(fresh_slice_s)
            warm_up(reader, setup.plans[i], q, block.start, gap_s)
            m, d = measure_plan(reader, setup.plans[i], q, block, **idle)
            io_s[slot.key][slot.rep, block.start:block.stop] = m.sum(axis=1)
            dispatch_s[slot.key][slot.rep, block.start:block.stop] = d.sum(axis=1)
        o_direct = all(r.o_direct for r in readers.values())
        return Measured(io_s, dispatch_s, o_direct, engine, sorted(readers))
    finally:
        close_readers(readers)
