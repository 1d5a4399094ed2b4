"""Validation: the real reader replays each layout's IOPlan on its weight store; the simulator
predicts the same plan; per-token I/O time measured vs predicted, next to the noise floor.

Per layout × queue depth, every (token, layer) batch of the plan is read with the
`DirectReader` (O_DIRECT, exactly QD reads in flight) and its makespan recorded; a token's
measured I/O time is the sum over its layers (layer l's reads start after layer l-1's, as in
`cost.simulate.io_seconds`, which gives the prediction). Repetitions run in rounds over all
layouts and QDs, each row read in blocks of tokens interleaved with the other rows' blocks
(the order rotates), so the drift of a shared disk (it moves by ~20 % over minutes here)
hits every row alike. A token's measured time is the median of its repetitions; its
predicted time likewise the median over as many simulator passes, each with its own per-read
draws of the model's command and transfer spreads (`cost.simulate.io_seconds_draws`).

- error_p50_pct: median over tokens of |predicted - measured| / measured;
- error_p99_pct: |predicted p99 - measured p99| / measured p99 (tail agreement);
- noise_p50_pct: median over tokens and repetitions of |run r - median of the other runs| /
  median of the other runs (how well one real run predicts another; needs ≥ 2 repetitions).
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..layout.plan import IOPlan
from ..progress import progress
from ..trace.format import ActivationTrace
from ..io.reader import DirectReader, open_reader
from ..loader.store import WeightStore, store_for

CALIBRATION_FILE = "calibration.bin"
DEFAULT_CALIBRATION_BYTES = 1 << 30


def measure_plan(reader: DirectReader, plan: IOPlan, queue_depth: int,
                 tokens: range | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Measured makespan (s) of every (token, layer) batch of `plan` (or of its `tokens`)
    and the time its first read waited to be issued, both of shape [tokens, n_layers]."""
    tokens = range(plan.n_tokens) if tokens is None else tokens
    n_layers = plan.n_layers
    out = np.zeros((len(tokens), n_layers))
    first = np.zeros((len(tokens), n_layers))
    ptr, off, length = plan.batch_ptr, plan.offset_bytes, plan.length_bytes
    for row, t in enumerate(tokens):
        for layer in range(n_layers):
            b = t * n_layers + layer
            lo, hi = ptr[b], ptr[b + 1]
            if hi > lo:
                times = reader.read_batch(off[lo:hi], length[lo:hi], queue_depth)
                out[row, layer] = times.makespan_s
                first[row, layer] = times.start_s.min()
    return out, first


TOKEN_BLOCKS = 8
"""A repetition measures every row in this many blocks of tokens, interleaved (block 1 of
every row, then block 2, ...), so each row samples the disk's drift over the whole
repetition rather than over its own few seconds."""
SWITCH_WARMUP_TOKENS = 2
"""At least this many tokens are read untimed before each block (see `warm_up`)."""
SWITCH_WARMUP_S = 0.02
"""...and at least this long: the disk's back end is slower for a while after a switch (or
any pause) and speeds up again as it is kept busy. Measured (stop 10, naive after sparse
blocks): after 2 warm-up tokens (3 ms) a block's first timed tokens were still 8-15 %
slower than its later ones, which put naive's p99 at 1.31x its p50; after 20 ms the
position effect was gone and the p99 was 1.14x the p50."""


def warm_up(reader: DirectReader, plan: IOPlan, queue_depth: int, start: int) -> int:
    """Read the tokens before `start` untimed (start − 1, start − 2, …, wrapping) for at least
    SWITCH_WARMUP_TOKENS tokens and SWITCH_WARMUP_S seconds; return how many were read.

    A block follows another row or a calibration part (another QD, file or reader): the
    first token after such a switch is 35 % slower, and the slowdown fades only with the
    row's own reading (SWITCH_WARMUP_S), so it must not be charged to the block."""
    t0 = time.perf_counter()
    k = 0
    while k < SWITCH_WARMUP_TOKENS or (time.perf_counter() - t0 < SWITCH_WARMUP_S
                                       and k < plan.n_tokens):
        k += 1
        measure_plan(reader, plan, queue_depth, [(start - k) % plan.n_tokens])
    return k


def calibration_grid(plans: list[IOPlan], qds: list[int], max_chunks: int = 4) -> list[int]:
    """Chunk sizes matched to the plans' reads: powers of two at quantiles of read bytes."""
    lengths = np.concatenate([p.length_bytes for p in plans if p.n_reads])
    if len(lengths) == 0:
        return [4096]
    qs = np.quantile(lengths, [0.1, 0.5, 0.9, 1.0]) if len(lengths) else [4096]
    chunks = sorted({int(2 ** round(np.log2(max(q, 4096)))) for q in qs} | {4096})
    while len(chunks) > max_chunks + 1:
        chunks.pop(len(chunks) // 2)
    return chunks


DEFAULT_BATCH_READS = (1, 4, 16, 64)
"""Short-batch calibration points: the plans' (token, layer) batches hold 1-60 reads."""
CLUSTERED_BATCH_READS = (16, 64)
"""Clustered short batches (reads near one another, like a plan's reads of one layer), at
the plans' QDs above 1: they tell the device's striping apart, which random offsets
cannot (a fit on random batches alone can put a layer's reads on one unit)."""


CALIBRATION_PIECES = 4
"""validate measures each calibration point in this many pieces per repetition (each
1/pieces of the point's time), dealt out between the row blocks: a point's median then
samples the drifting disk at 4 × reps moments rather than reps, and the fit (and every
prediction) inherits less of where those few moments fell (stop 12)."""


def calibration_round(data_file: Path, plans: list[IOPlan], qds: list[int], *,
                      size_bytes: int = DEFAULT_CALIBRATION_BYTES, duration_s: float = 0.5,
                      seed: int = 0, allow_page_cache: bool = False, engine: str = "auto",
                      batch_reads=DEFAULT_BATCH_READS, grid_part: tuple[int, int] | None = None,
                      pieces: int = 1):
    """One round of a quick calibration on `data_file` (created if missing): every point of
    a grid matched to the plans (chunk sizes at quantiles of their reads, the QDs and the
    powers of two below them), and short batches of `batch_reads` reads of those chunks at
    the plans' QDs (measured like a plan's batch), `pieces` times (each piece 1/pieces of
    `duration_s`; every piece of the grid in its own random order). A profile without a fit
    (`grid_part` = (j, k): only part j of k of the round; None if that part is empty)."""
    from ..device.calibrate import calibrate

    chunks = [c for c in calibration_grid(plans, qds) if c <= size_bytes]
    top = max(qds)
    qd_grid = sorted(set(qds) | {q for q in (1, 2, 4, 8, 16, 32, 64) if q <= top})
    piece_s = duration_s / int(pieces)
    return calibrate(data_file, size_bytes=size_bytes, chunks=chunks, qds=qd_grid,
                     duration_s=piece_s, warmup_s=0.1 / int(pieces), repeats=int(pieces),
                     seed=seed, allow_page_cache=allow_page_cache, engine=engine,
                     name="validate-calibration",
                     batch_reads=batch_reads, batch_qds=sorted(set(qds)),
                     batch_duration_s=piece_s / 2,
                     clustered_reads=CLUSTERED_BATCH_READS if batch_reads else (),
                     description="quick grid measured by flashsim validate --calibrate, "
                                 "rounds interleaved with the validation repetitions",
                     quiet=True, grid_part=grid_part)


VALIDATE_BATCH_WEIGHT = 10.0
"""The fit's weight on short-batch points here: a plan is nothing but short batches, and the
steady-state points only keep the fit physical (run D of experiments/validation: weight 10
left every row's bias within ±16 %, weight 3 within ±21 %)."""


def merge_rounds(rounds: list[Any], *, quick: bool = False,
                 batch_weight: float = VALIDATE_BATCH_WEIGHT):
    """One fitted profile from calibration rounds: per point the median over rounds."""
    from ..device.fit import fit_profile
    from ..device.profile import median_point

    rounds = [r for r in rounds if r is not None]
    by_key: dict[tuple[int, int, int, str], list[Any]] = {}
    for prof in rounds:
        for p in prof.points:
            key = (p.chunk_bytes, p.queue_depth, p.batch_reads or 0, p.pattern)
            by_key.setdefault(key, []).append(p)
    points = [median_point(chunk, qd, [p.model_dump() for p in ps], batch_reads=n or None,
                           pattern=pattern)
              for (chunk, qd, n, pattern), ps in sorted(by_key.items())]
    first = rounds[0]
    measured = first.measured.model_copy(update={"repeats": max(map(len, by_key.values()))})
    profile = type(first).model_validate({**dict(first), "points": points, "measured": measured})
    return fit_profile(profile, quick=quick, batch_weight=batch_weight)


def _noise(times: np.ndarray) -> np.ndarray:
    """Leave-one-out relative deviation per (rep, token): |t_r - median(others)| / median(others)."""
    reps = times.shape[0]
    out = np.empty_like(times)
    for r in range(reps):
        others = np.median(np.delete(times, r, axis=0), axis=0)
        out[r] = np.abs(times[r] - others) / others
    return out


def row_stats(measured_s: np.ndarray, predicted_s: np.ndarray) -> dict[str, Any]:
    """Summary of one layout × QD row; `measured_s` is [reps, n_tokens], `predicted_s`
    [draws, n_tokens] or [n_tokens]: both sides are taken per token as the median over
    their repetitions (draws), then compared."""
    meas = np.median(measured_s, axis=0)
    predicted_s = np.median(np.atleast_2d(predicted_s), axis=0)
    ok = meas > 0
    err = np.abs(predicted_s[ok] - meas[ok]) / meas[ok] * 100
    m50, m99 = np.percentile(meas, [50, 99])
    p50, p99 = np.percentile(predicted_s, [50, 99])
    row: dict[str, Any] = {
        "measured_io_ms_p50": m50 * 1e3, "predicted_io_ms_p50": p50 * 1e3,
        "measured_io_ms_p99": m99 * 1e3, "predicted_io_ms_p99": p99 * 1e3,
        "measured_io_ms_mean": float(meas.mean()) * 1e3,
        "predicted_io_ms_mean": float(predicted_s.mean()) * 1e3,
        "error_p50_pct": float(np.median(err)) if len(err) else None,
        "error_p99_pct": float(abs(p99 - m99) / m99 * 100) if m99 > 0 else None,
        "token_error_p90_pct": float(np.percentile(err, 90)) if len(err) else None,
        "bias_pct": float(np.median((predicted_s[ok] - meas[ok]) / meas[ok]) * 100)
        if ok.any() else None,
        "ratio": float(p50 / m50) if m50 > 0 else None,
        "noise_p50_pct": None, "noise_p90_pct": None,
    }
    if measured_s.shape[0] >= 2:
        nz = _noise(measured_s[:, ok]) * 100
        row["noise_p50_pct"] = float(np.median(nz))
        row["noise_p90_pct"] = float(np.percentile(nz, 90))
    return row


@dataclass
class ValidationResult:
    """Rows (one per layout × QD), per-token times, and how the run was set up."""

    rows: list[dict[str, Any]]
    per_token: dict[tuple[str, int], dict[str, np.ndarray]]
    info: dict[str, Any] = field(default_factory=dict)


def validate(trace: ActivationTrace, layout_names: list[str], qds: list[int], *,
             store: str | os.PathLike, model_dir: str | os.PathLike | None = None,
             profile: Any = None, calibrate: bool = False, reps: int = 3,
             tokens: int | None = None, engine: str = "fast", with_fio: bool = False,
             train_trace: ActivationTrace | None = None, which: str = "predicted",
             calibration_bytes: int = DEFAULT_CALIBRATION_BYTES, calibrate_on: str = "file",
             calibration_duration_s: float = 0.5, quick_fit: bool = False,
             calibration_batch_reads=DEFAULT_BATCH_READS,
             calibration_pieces: int = CALIBRATION_PIECES,
             reader_engine: str = "auto", allow_page_cache: bool = False,
             quiet: bool = True) -> ValidationResult:
    """Measure and predict per-token I/O of every layout × QD on `trace` (see module doc).

    `store`: a store file (used for every layout; it must match each plan) or a folder where
    each layout's store is built on first use (named by placement digest, reused later).
    `profile`: a device profile (path or object); with `calibrate` a quick profile is
    measured in the same run and used instead — one calibration round per repetition, its
    points dealt out between that repetition's row blocks (`TOKEN_BLOCKS`), so calibration
    and measurement sample the disk's drift over the same minutes; per point the median
    over rounds, then the
    device helper's fit — on a `calibration_bytes` random-data file in
    the store folder (`calibrate_on="file"`), or over the largest of the stores themselves
    (`calibrate_on="store"`: the same file extent the plans read). Each round also measures
    short batches of `calibration_batch_reads` reads (empty: none) at the plans' QDs, read
    exactly as a plan's batches are, so the fit sees the per-batch start and ramp-up.
    `calibration_pieces`: each point measured in that many pieces per repetition
    (`calibration_duration_s` split among them).
    """
    from ..cost.simulate import io_seconds_draws
    from ..device import load_params
    from ..layout.registry import make_layout

    if reps < 1:
        raise InputError(f"{reps} repetitions", key="reps", expected="at least 1")
    if isinstance(calibration_pieces, bool) or int(calibration_pieces) < 1:
        raise InputError(f"{calibration_pieces!r} calibration pieces", key="calibration_pieces",
                         expected="an integer ≥ 1")
    if not qds or any(isinstance(q, bool) or int(q) < 1 for q in qds):
        raise InputError(f"queue depths {qds}", key="qd", expected="integers ≥ 1")
    if not layout_names:
        raise InputError("no layouts", key="layouts", expected="comma-separated layout names")
    if profile is None and not calibrate:
        raise InputError("no device profile", key="device",
                         expected="--device PROFILE.yaml or --calibrate")
    trace = trace.head(tokens)
    layouts = [make_layout(n, train_trace=train_trace) for n in layout_names]
    plans = [lay.plan(trace, which=which) for lay in layouts]
    store_path = Path(store)
    stores: list[WeightStore] = []
    ckpt = None
    if store_path.is_file():
        single = WeightStore.open(store_path)
        stores = [single] * len(plans)
        folder = store_path.parent
    else:
        if store_path.exists() and not store_path.is_dir():
            raise InputError("not a file or folder", file=store_path)
        store_path.mkdir(parents=True, exist_ok=True)
        folder = store_path
        from ..model.checkpoint import load_checkpoint
        ckpt = load_checkpoint(model_dir)
        stores = [store_for(ckpt, lay, folder, trace.geometry) for lay in layouts]
    model_sha = trace.meta.get("model_sha256")
    for s, p in zip(stores, plans):
        s.check_plan(p, model_sha256=model_sha)
    if calibrate_on not in ("file", "store"):
        raise InputError(f"unknown calibration target {calibrate_on!r}", key="calibrate_on",
                         expected="file or store")
    if calibrate:
        if calibrate_on == "store":
            biggest = max(stores, key=lambda s: s.file_bytes)
            data_file, size = biggest.path, biggest.file_bytes // 4096 * 4096
        else:
            data_file, size = folder / CALIBRATION_FILE, calibration_bytes
    else:
        params = load_params(profile)
        profile_info = {"calibrated": False, "source": str(profile)
                        if isinstance(profile, (str, os.PathLike)) else "object",
                        "params": params.model_dump()}
    cal_rounds = []
    readers: dict[str, DirectReader] = {}
    try:
        for s in stores:
            if str(s.path) not in readers:
                readers[str(s.path)] = open_reader(s.path, reader_engine, allow_page_cache)
        o_direct = all(r.o_direct for r in readers.values())
        used_engine = next(iter(readers.values())).engine
        keys = [(i, q) for i in range(len(plans)) for q in qds]
        measured = {k: np.zeros((reps, plans[k[0]].n_tokens)) for k in keys}
        dispatch = {k: np.zeros((reps, plans[k[0]].n_tokens)) for k in keys}
        for i, q in keys:  # warm-up: threads started, first-touch costs paid, not recorded
            warm = trace.head(2)
            measure_plan(readers[str(stores[i].path)], layouts[i].plan(warm, which=which), q)
        n_tokens = plans[0].n_tokens
        blocks = [range(int(a[0]), int(a[-1]) + 1)
                  for a in np.array_split(np.arange(n_tokens), min(TOKEN_BLOCKS, n_tokens))]
        per_rep = len(blocks) * len(keys)
        items = [(r, blocks[b], keys[(j + r + b) % len(keys)]) for r in range(reps)
                 for b in range(len(blocks)) for j in range(len(keys))]
        for j, (r, block, (i, q)) in enumerate(progress(items, total=len(items),
                                                        desc="validate", quiet=quiet)):
            if calibrate:  # one calibration round per rep, dealt out between its row blocks
                cal_rounds.append(calibration_round(
                    data_file, plans, qds, size_bytes=size, duration_s=calibration_duration_s,
                    seed=r, allow_page_cache=allow_page_cache, engine=used_engine,
                    batch_reads=calibration_batch_reads, grid_part=(j % per_rep, per_rep),
                    pieces=calibration_pieces))
            warm_up(readers[str(stores[i].path)], plans[i], q, block.start)
            m, d = measure_plan(readers[str(stores[i].path)], plans[i], q, block)
            measured[(i, q)][r, block.start:block.stop] = m.sum(axis=1)
            dispatch[(i, q)][r, block.start:block.stop] = d.sum(axis=1)
    finally:
        for rd in readers.values():
            rd.close()
    if calibrate:
        prof = merge_rounds(cal_rounds, quick=quick_fit)
        params = prof.params
        profile_info = {"calibrated": True, "calibrated_on": str(data_file),
                        "rounds": reps, "pieces_per_round": calibration_pieces,
                        "params": prof.params.model_dump(),
                        "fit_median_abs_error_pct": prof.fit.median_abs_error_pct,
                        "fit_worst_abs_error_pct": prof.fit.worst_abs_error_pct,
                        "fit_batch_weight": VALIDATE_BATCH_WEIGHT,
                        "points": [p.model_dump() for p in prof.points],
                        "point_errors": [e.model_dump() for e in prof.fit.points]}
    fio_times: dict[tuple[int, int], dict[str, float]] = {}
    if with_fio:
        from .fio_export import fio_available, run_fio
        if not fio_available():
            raise InputError("fio is not installed", key="--with-fio",
                             expected="fio on PATH (apt-get install fio)")
        for i, q in keys:
            fio_times[(i, q)] = run_fio(plans[i], stores[i].path, folder / "fio", q,
                                        name=f"{layouts[i].name}-qd{q}")
    rows = []
    per_token = {}
    for i, q in keys:
        plan = plans[i]
        # one simulator pass per repetition, each with its own per-read draws
        pred = io_seconds_draws(plan, params, q, reps, engine).sum(axis=2)
        row = {"layout": layouts[i].name, "queue_depth": int(q), "n_tokens": plan.n_tokens,
               "reads_per_token": float(plan.reads_per_token().mean()),
               "bytes_per_token": float(plan.bytes_per_token().mean()),
               "mean_read_bytes": float(plan.length_bytes.mean()) if plan.n_reads else 0.0,
               "reps": reps, **row_stats(measured[(i, q)], pred),
               "dispatch_ms_p50": float(np.median(dispatch[(i, q)])) * 1e3}
        if with_fio:
            row.update(fio_times[(i, q)])
            one = io_seconds_stream(plan, params, q, engine)
            row["predicted_stream_ms_per_token"] = one * 1e3 / plan.n_tokens
        rows.append(row)
        per_token[(layouts[i].name, int(q))] = {"measured_s": measured[(i, q)],
                                               "predicted_s": pred}
    info = {"trace": trace.meta.get("name") or trace.meta.get("source"),
            "trace_synthetic": trace.is_synthetic, "model": trace.geometry.name,
            "tokens": trace.n_tokens - trace.n_prompt_tokens, "set": which, "engine": engine,
            "reps": reps, "o_direct": o_direct, "reader_engine": used_engine,
            "stores": sorted(readers),
            "profile": profile_info,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return ValidationResult(rows, per_token, info)


def io_seconds_stream(plan: IOPlan, params: Any, queue_depth: int, engine: str = "fast") -> float:
    """Predicted time of the whole plan as one stream at `queue_depth` (no layer barriers).

    What a fio replay of the plan's iolog measures (fio cannot wait between batches).
    """
    from ..device import make_device

    if plan.n_reads == 0:
        return 0.0
    device = make_device(params, engine)
    ptr = np.array([0, plan.n_reads], np.int64)
    return float(np.asarray(device.run_batches(plan.offset_bytes, plan.length_bytes, ptr,
                                               queue_depth))[0])


def meets_goal(row: dict[str, Any], *, p50_pct: float = 10.0, p99_pct: float = 20.0) -> bool:
    """The issue's goal for one row: error_p50 ≤ 10 % and error of the p99 ≤ 20 %."""
    e50, e99 = row.get("error_p50_pct"), row.get("error_p99_pct")
    return e50 is not None and e99 is not None and e50 <= p50_pct and e99 <= p99_pct
