"""Measure a real file's random-read curve (chunk × queue depth) with the direct-I/O reader.

Every point: a warm-up (excluded), then one closed-loop batch of random chunk-aligned reads
over the whole file lasting about `duration_s`; throughput and latency are read off its
steady state (`fit.steady_point`, the same rule the model's predictions use). The grid is
repeated `repeats` times in rounds (all points, then all again) so slow drift of a shared
disk spreads over every point (each round in its own random order); a point's value is the
median of its repeats and the spread (max − min) / median is recorded.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, check_free_space
from ..errors import InputError
from ..io.buffers import transparent_huge_pages_enabled
from ..io.reader import ALIGN_BYTES, DirectReader, is_block_device, mount_of, readable_bytes
from ..progress import progress
from ..units import format_size, parse_size
from .crossval import CV_FOLDS
from .fit import fit_profile, steady_point
from .interleave import measure_interleave
from .profile import DevicePoint, DeviceProfile, MeasuredInfo, median_point
from .span import SPAN_KEYS, STANDARD_SPANS
from .throttle import blkio_throttle_of

DEFAULT_CHUNKS = (4096, 8192, 16384, 32768, 65536, 131072, 262144, 1 << 20)
DEFAULT_QDS = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_DURATION_S = 0.32
STANDARD_BATCH_READS = (4, 16, 64)
"""Short batches a standard calibration measures beside the steady-state grid: a plan is
made of them (a layer's reads, issued together from an idle device), and a device may serve
a burst unlike a sustained stream (a token bucket lets it through at full speed; a virtual
disk's back end wakes up), which no steady-state point shows."""
STANDARD_BATCH_QDS = (1, 8, 32)
STANDARD_BATCH_MAX_CHUNK = 256 << 10
"""Short batches are measured for chunks up to this size: what plans read (rows, merged
ranges of a few rows). Behind a byte cap, up to the largest chunk: there the steady points
of large reads all read at the cap, and a decode's merged reads run to about 1 MiB."""
STANDARD_CLUSTERED_READS = (16,)
"""Clustered short batches a standard calibration measures too: 16 reads to every other
chunk from a random start, at the batch QDs above 1. Random offsets alone cannot tell a
device's striping apart (aligned power-of-two reads land on whole stripes); a fit without
them put this disk's reads of 16 KiB on two units, and 20 KiB reads at QD 16 came out 24 %
slower than measured, off the grid."""
DEFAULT_WARMUP_S = 0.1
DEFAULT_REPEATS = 5
"""The standard calibration: 8 chunks × 7 QDs in 5 rounds of 0.32 s a point (after 0.1 s of
warm-up), with the short batches and spans about 4 min of reads; fitted and cross-validated,
under 5 min in all on 2 CPUs. A shared disk drifts 15–30 % over minutes: rounds in random
order average that, a longer point does not; 0.32 s still holds some 90 reads of 1 MiB at
QD 1 behind a 300 MB/s throttle."""
_WRITE_BLOCK = 64 << 20
_ENGINE_WORDS = {"aio": "native Linux AIO, queue_depth reads in flight from one thread",
                 "threads": "os.preadv from queue_depth threads"}


def ensure_data_file(path: str | os.PathLike, size_bytes: int, *, seed: int | None = None) -> bool:
    """Create `path` with `size_bytes` of random (incompressible) data written in full.

    Returns True when it was created. An existing file at least that large is used as it is;
    a smaller one is an InputError (never overwritten). Written atomically, space checked first.
    """
    p = Path(path)
    if size_bytes % ALIGN_BYTES:
        raise InputError(f"size {size_bytes} is not a multiple of {ALIGN_BYTES}", key="size")
    if p.exists():
        have = readable_bytes(p)
        if have < size_bytes:
            raise InputError(f"existing file has {have} bytes, fewer than --size {size_bytes}",
                             file=p, expected="a larger file, a smaller --size or a new path")
        return False
    check_free_space(p, size_bytes + (64 << 20))
    rng = np.random.default_rng(seed)
    with atomic_write(p, "wb") as handle:
        left = size_bytes
        while left:
            n = min(left, _WRITE_BLOCK)
            handle.write(rng.bytes(n))
            left -= n
    _drop_cache(p)
    return True


def _drop_cache(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    except OSError:
        pass


def block_device_info(device: str) -> str | None:
    """A one-line description of a block device from sysfs (size, model, block sizes, queue)."""
    name = os.path.basename(os.path.realpath(device)) if device.startswith("/dev/") else None
    if not name:
        return None
    base = Path("/sys/class/block") / name
    if not base.exists():
        return name

    def read(rel: str) -> str | None:
        for root in (base, base.parent):  # a partition's queue lives on its parent disk
            f = root / rel
            if f.exists():
                try:
                    return f.read_text().strip()
                except OSError:
                    return None
        return None

    size = read("size")
    fields = [name]
    if size and size.isdigit():
        fields.append(f"{int(size) * 512 / 2**30:.0f} GiB")
    for label, rel in (("model", "device/model"), ("vendor", "device/vendor"),
                       ("logical block", "queue/logical_block_size"),
                       ("physical block", "queue/physical_block_size"),
                       ("rotational", "queue/rotational"), ("scheduler", "queue/scheduler"),
                       ("nr_requests", "queue/nr_requests")):
        value = read(rel)
        if value:
            fields.append(f"{label} {value}")
    if name.startswith("vd"):
        fields.append("virtio-blk")
    return ", ".join(fields)


def describe_location(path: str | os.PathLike) -> dict[str, str | None]:
    """Host, file system and block device of `path`, for a profile's `measured` section."""
    # a block device read directly (e.g. /dev/zram0) has no file system: its node is on devtmpfs
    m = {} if is_block_device(path) else mount_of(path)
    fs = f"{m['type']} on {m['device']} at {m['mount_point']} ({m['options']})" if m else None
    return {"host": f"{socket.gethostname()} ({platform.platform()}, {os.cpu_count()} CPUs)",
            "file_system": fs,
            "block_device": block_device_info(m["device"] if m else os.fspath(path))}


MIN_READS_PER_QD = 8
"""A timed run holds at least this many reads a unit of queue depth."""


def _run_for(reader: DirectReader, chunk: int, qd: int, seconds: float, rate_per_s: float,
             rng: np.random.Generator, slots: int,
             min_reads_per_qd: int = MIN_READS_PER_QD):
    """A closed-loop batch of about `seconds` at `rate_per_s` (at least `min_reads_per_qd` ×
    QD reads); its times and its sustained rate (steady window: a token bucket's burst at
    the start and the drain at the end excluded)."""
    n = int(max(min_reads_per_qd * qd, min(rate_per_s * seconds, 2_000_000)))
    off = rng.integers(0, slots, size=n, dtype=np.int64) * chunk
    times = reader.read_batch(off, np.full(n, chunk, dtype=np.int64), qd)
    tput_mb_s = steady_point(times.start_s, times.finish_s, chunk, qd)["throughput_mb_s"]
    rate = tput_mb_s * 1e6 / chunk if np.isfinite(tput_mb_s) and tput_mb_s > 0 else 0.0
    return times, rate or n / times.makespan_s


def _warm_up(reader: DirectReader, chunk: int, qd: int, warmup_s: float,
             rate_hint_per_s: float | None, rng: np.random.Generator, slots: int) -> float:
    """Read for about `warmup_s`; the rate to size the timed run with.

    With a hint (the point's last repeat, a sustained rate) one run. Without, a probe of
    2 × QD reads and the warm-up in two steps, a quarter then the rest, each sized from the
    rate before it: a device that serves a burst faster than it sustains (a token bucket)
    would make one run sized from the first reads last many times `warmup_s`. The lower of
    the steps' sustained rates is returned (the second may be short enough to be a burst).
    """
    if rate_hint_per_s:
        if warmup_s > 0:
            _run_for(reader, chunk, qd, warmup_s, rate_hint_per_s, rng, slots, min_reads_per_qd=2)
        return rate_hint_per_s
    _, rate = _run_for(reader, chunk, qd, 0, 0, rng, slots, min_reads_per_qd=2)
    if warmup_s <= 0:
        return rate
    t_end = time.perf_counter() + warmup_s
    _, rate = _run_for(reader, chunk, qd, warmup_s / 4, rate, rng, slots, min_reads_per_qd=2)
    left_s = t_end - time.perf_counter()
    if left_s > 0:
        _, rest = _run_for(reader, chunk, qd, left_s, rate, rng, slots, min_reads_per_qd=2)
        rate = min(rate, rest)
    return rate


def measure_point(reader: DirectReader, chunk: int, qd: int, *, duration_s: float,
                  warmup_s: float, rng: np.random.Generator,
                  rate_hint_per_s: float | None = None,
                  min_reads_per_qd: int = MIN_READS_PER_QD) -> dict[str, float]:
    """One repeat of one point: warm-up (discarded), then a timed closed-loop batch.

    The runs are sized in reads from a sustained rate (`_warm_up`): sized from a burst (a
    token bucket lets the first reads through at the disk's speed) a run would last several
    times its duration.
    """
    slots = reader.file_bytes // chunk
    if slots < 1:
        raise InputError(f"file is smaller than one {chunk}-byte read", file=reader.path)
    rate = _warm_up(reader, chunk, qd, warmup_s, rate_hint_per_s, rng, slots)
    times, _ = _run_for(reader, chunk, qd, duration_s, rate, rng, slots,
                        min_reads_per_qd=min_reads_per_qd)
    out = steady_point(times.start_s, times.finish_s, chunk, qd)
    out["duration_s"] = times.makespan_s
    return out


CAPPED_MIN_READS_PER_QD = 4
"""MIN_READS_PER_QD behind a byte cap: 8 × 64 reads of 1 MiB take 1.8 s at 300 MB/s, and
4 × QD still leaves 2 × QD reads between the ramp and the drain that `steady_point` leaves
out."""
BATCH_MAX_BYTES = 8 << 20
"""Short-batch points move at most this many bytes per batch (bigger ones are steady state)."""
_MAX_BATCHES = 400


def measure_batch_point(reader: DirectReader, chunk: int, qd: int, batch_reads: int, *,
                        duration_s: float, rng: np.random.Generator,
                        pattern: str = "random", span_bytes: int | None = None
                        ) -> dict[str, float]:
    """One repeat of a short-batch point: back-to-back batches of `batch_reads` random
    chunk-aligned reads (or `clustered`: every other chunk from a random start) for about
    `duration_s` (8 to 400 batches), each read with `read_batch` exactly as validate reads a
    plan's (token, layer) batch; the median wall time of the call (what a caller waits, the
    reader's checks before the first read included). `span_bytes`: the reads confined to
    the file's first that many bytes."""
    slots = min(reader.file_bytes, span_bytes or reader.file_bytes) // chunk
    if slots < 1:
        raise InputError(f"file is smaller than one {chunk}-byte read", file=reader.path)
    if pattern == "clustered":
        if slots < 2 * batch_reads:
            raise InputError(f"file is smaller than {2 * batch_reads} {chunk}-byte chunks",
                             file=reader.path, key="batch_reads")
        first = rng.integers(0, slots - 2 * batch_reads + 1, size=_MAX_BATCHES, dtype=np.int64)
        off = (first[:, None] + 2 * np.arange(batch_reads, dtype=np.int64)[None, :]) * chunk
    else:
        off = rng.integers(0, slots, size=(_MAX_BATCHES, batch_reads), dtype=np.int64) * chunk
    length = np.full(batch_reads, chunk, dtype=np.int64)
    makespans = []
    t_end = time.perf_counter() + duration_s
    for b in range(_MAX_BATCHES):
        t0 = time.perf_counter()
        reader.read_batch(off[b], length, qd)
        makespans.append(time.perf_counter() - t0)
        if b >= 7 and time.perf_counter() > t_end:
            break
    m = float(np.median(makespans)) * 1e6
    return {"batch_makespan_us": m, "throughput_mb_s": batch_reads * chunk / m,
            "batches": len(makespans)}


def batch_grid(chunks, qds, batch_reads, pattern: str = "random"
               ) -> list[tuple[int, int, int, str]]:
    """Short-batch points (chunk, queue depth, reads per batch, pattern): every chunk × batch
    size × QD, with the QD cut to the batch size (a batch of n reads runs alike at any QD ≥
    n), and batches of at most BATCH_MAX_BYTES (the smallest batch size of a chunk always
    kept)."""
    out = []
    for c in chunks:
        sizes = sorted(set(int(n) for n in batch_reads))
        for j, n in enumerate(sizes):
            if j and n * c > BATCH_MAX_BYTES:
                continue
            out.extend((int(c), min(int(q), n), n, pattern) for q in qds)
    return sorted(set(out))


GridKey = tuple[int, int, int | None, str, int | None]
"""A point of the calibration grid: (chunk bytes, queue depth, reads per batch or None for
a steady-state point, pattern, span bytes or None for the whole file)."""


def calibrate(path: str | os.PathLike, *, size_bytes: int, chunks=DEFAULT_CHUNKS,
              qds=DEFAULT_QDS, duration_s: float = DEFAULT_DURATION_S,
              warmup_s: float = DEFAULT_WARMUP_S, repeats: int = DEFAULT_REPEATS,
              allow_page_cache: bool = False, name: str = "device",
              description: str = "", seed: int = 0, quiet: bool = False,
              engine: str = "auto", batch_reads=STANDARD_BATCH_READS,
              batch_qds=STANDARD_BATCH_QDS, batch_max_chunk: int = STANDARD_BATCH_MAX_CHUNK,
              batch_duration_s: float | None = None,
              clustered_reads=STANDARD_CLUSTERED_READS,
              grid_part: tuple[int, int] | None = None, holdout=(), fit: bool = False,
              cv_folds: int = CV_FOLDS, spans=STANDARD_SPANS) -> DeviceProfile | None:
    """Measure every chunk × QD point `repeats` times (in rounds); a profile, fitted with
    `fit` (and cross-validated over `cv_folds` folds, 0 = not).

    `holdout`: (chunk, QD) pairs off the grid, measured in the same rounds but never
    fitted (the profile's `holdout_points`): the model's error between grid points.

    `grid_part` = (j, k): measure only part j of k of each round (its random order dealt out
    round-robin; the same `seed` gives the same parts), so a caller can spread one round
    over its own work; None when part j is empty. A part's profile holds one point per
    measurement (a point measured twice in it appears twice), for the caller to merge.

    With `batch_reads` (the standard 4, 16, 64; () for none) also short-batch points:
    batches of that many random reads at each of `batch_qds` (None: `qds`), for chunks up
    to `batch_max_chunk`, `batch_duration_s` (default half of `duration_s`) per point and
    round, in the same random order as the others;
    `clustered_reads` (the standard 16; () for none; none without `batch_reads`) adds
    batches of reads to every other chunk from a random start (reads near one another: what
    tells striping apart), at the batch QDs above 1.

    `spans` (bytes; () for none): the short batches of `span.SPAN_KEYS` that the grid holds
    measured again with their reads confined to the file's first S bytes, for each S below
    the file's size (the profile's `span_points`, never fitted: device/span.py).
    """
    clustered_reads = tuple(clustered_reads) if batch_reads else ()  # no batches: grid only
    _check_settings(chunks, repeats, duration_s, warmup_s, (*batch_reads, *clustered_reads))
    holdout = check_holdout(holdout, chunks, qds)
    check_spans(spans)
    largest = max([*chunks, *(c for c, _ in holdout)])
    if size_bytes < largest:  # refused before the data file is made
        raise InputError(f"a {size_bytes}-byte file is smaller than one {largest}-byte read",
                         key="size", expected=f"at least {largest} bytes")
    created = ensure_data_file(path, size_bytes, seed=seed)
    rng = np.random.default_rng(seed)
    # reads from a blkio-throttled cgroup: the caps are part of what was measured
    throttle = blkio_throttle_of(path)
    capped = throttle is not None and throttle.read_mb_s is not None
    grid = _grid(chunks, qds, list(qds if batch_qds is None else batch_qds), batch_reads,
                 clustered_reads, readable_bytes(path),
                 max(chunks) if capped else batch_max_chunk)
    grid += _span_grid(grid, spans, readable_bytes(path))
    grid += [(c, q, None, "random", None) for c, q in holdout]
    rounds = _rounds(grid, repeats, rng, grid_part)
    if grid_part is not None and not rounds:
        return None
    batch_s = duration_s / 2 if batch_duration_s is None else batch_duration_s
    t_begin = time.perf_counter()
    with DirectReader(path, allow_page_cache=allow_page_cache, engine=engine) as reader:
        results = _measure_rounds(reader, grid, rounds, duration_s=duration_s,
                                  warmup_s=warmup_s, batch_s=batch_s, rng=rng, quiet=quiet,
                                  capped=capped)
        # with short batches: what the same batches cost after a decode's compute
        interleave = (measure_interleave(reader, rng) if batch_reads and grid_part is None
                      else None)
    total_s = time.perf_counter() - t_begin
    points, held, spanned = _split_points(
        _points(results, one_per_measurement=grid_part is not None), holdout)
    if not points:
        return None
    info = _measured_info(reader, path, bool(batch_reads), created=created,
                          duration_s=duration_s, warmup_s=warmup_s, repeats=repeats,
                          total_s=total_s)
    if grid_part is not None:  # a part may hold too few points to fit: checked when merged
        return DeviceProfile.model_construct(name=name, description=description, measured=info,
                                             points=points, holdout_points=held,
                                             span_points=spanned, throttle=throttle)
    profile = DeviceProfile(name=name, description=description, measured=info, points=points,
                            holdout_points=held, span_points=spanned, interleave=interleave,
                            throttle=throttle)
    return fit_profile(profile, cv_folds=cv_folds, quiet=quiet) if fit else profile


def _split_points(points: list[DevicePoint], holdout
                  ) -> tuple[list[DevicePoint], list[DevicePoint], list[DevicePoint]]:
    """The measured points as (fitted grid, held-out, span points)."""
    held = [p for p in points if (p.chunk_bytes, p.queue_depth) in holdout
            and p.batch_reads is None]
    spanned = [p for p in points if p.span_bytes is not None]
    return [p for p in points if p not in held and p.span_bytes is None], held, spanned


def parse_holdout(text: str, *, key: str = "--holdout") -> list[tuple[int, int]]:
    """`12k/3,48k/12` (or `12kx3`) → [(12288, 3), (49152, 12)]: chunk/QD pairs."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        parts = item.replace("x", "/").split("/") if item else []
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise InputError(f"{item!r} is not a chunk/QD pair", key=key,
                             expected="CHUNK/QD pairs like 12k/3,48k/12")
        out.append((parse_size(parts[0].strip(), key=key), int(parts[1])))
    return out


def check_holdout(holdout, chunks, qds, *, key: str = "holdout") -> list[tuple[int, int]]:
    """The holdout pairs, each once; InputError for one the grid measures (the fit would
    see it), a chunk not a multiple of the alignment, or a QD below 1."""
    out = []
    for chunk, qd in holdout:
        chunk, qd = int(chunk), int(qd)
        if chunk <= 0 or chunk % ALIGN_BYTES or qd < 1:
            raise InputError(f"holdout point {chunk}/{qd}", key=key,
                             expected=f"a chunk that is a multiple of {ALIGN_BYTES} bytes and "
                                      "a queue depth ≥ 1")
        if chunk in chunks and qd in qds:
            raise InputError(f"holdout point {format_size(chunk)}/{qd} is on the calibration "
                             "grid, so the fit would see it", key=key,
                             expected="a chunk/QD pair off the grid (a chunk or a QD the grid "
                                      "does not measure)")
        if (chunk, qd) not in out:
            out.append((chunk, qd))
    return out


def check_spans(spans, *, key: str = "spans") -> tuple[int, ...]:
    """The spans as ints; InputError for one that is not a positive multiple of the
    alignment (a span point's reads are aligned chunks)."""
    for span in spans:
        if isinstance(span, bool) or int(span) <= 0 or int(span) % ALIGN_BYTES:
            raise InputError(f"span {span!r}", key=key,
                             expected=f"sizes that are positive multiples of {ALIGN_BYTES} "
                                      "bytes, like 4MiB,32MiB")
    return tuple(int(s) for s in spans)


def _check_settings(chunks, repeats: int, duration_s: float, warmup_s: float,
                    batch_sizes) -> None:
    """InputError on settings calibration cannot run with."""
    if repeats < 1 or duration_s <= 0 or warmup_s < 0:
        raise InputError("repeats must be ≥ 1, duration > 0 and warm-up ≥ 0", key="repeats")
    for c in chunks:
        if c % ALIGN_BYTES:
            raise InputError(f"chunk {c} is not a multiple of {ALIGN_BYTES} bytes", key="chunks")
    if any(isinstance(n, bool) or int(n) < 1 for n in batch_sizes):
        raise InputError(f"batch sizes {list(batch_sizes)}", key="batch_reads",
                         expected="integers ≥ 1")


def _grid(chunks, qds, batch_qds, batch_reads, clustered_reads,
          file_bytes: int, batch_max_chunk: int | None = None) -> list[GridKey]:
    """Every point to measure: steady-state chunk × QD, then the random short batches, then
    the clustered ones (at batch QDs above 1, where the file has room for 2n chunks); short
    batches only of chunks up to `batch_max_chunk` (None: every chunk). Behind a byte cap
    `calibrate` passes the largest chunk: every steady point of large reads reads at the
    cap there, and only a batch inside a slice's budget times the device's own speed."""
    grid: list[GridKey] = [(c, q, None, "random", None) for c in chunks for q in qds]
    small = [c for c in chunks if batch_max_chunk is None or c <= batch_max_chunk]
    grid += [(*g, None) for g in batch_grid(small, batch_qds, batch_reads)]
    grid += [(*g, None) for g in batch_grid(small, [q for q in batch_qds if q > 1],
                                            clustered_reads, "clustered")
             if file_bytes // g[0] >= 2 * g[2] and g[0] * g[2] <= BATCH_MAX_BYTES]
    return grid


def _span_grid(grid: list[GridKey], spans, file_bytes: int) -> list[GridKey]:
    """The span points: each of SPAN_KEYS the grid measures over the whole file, again over
    each span below the file's size that holds at least a batch's chunks."""
    have = {g[:3] for g in grid if g[2] is not None and g[3] == "random"}
    return [(c, q, n, "random", int(s)) for s in sorted(set(spans)) for c, q, n in SPAN_KEYS
            if (c, q, n) in have and s < file_bytes and s // c >= n]


def _rounds(grid: list[GridKey], repeats: int, rng: np.random.Generator,
            grid_part: tuple[int, int] | None) -> list[tuple[int, GridKey]]:
    """(round, point) in measuring order; with `grid_part` = (j, k) every k-th from the j-th.

    Each round visits the grid in its own random order, so a history effect of the disk (a
    burst budget, a cache, drift) lands on every point alike, not on the last QDs.
    """
    rounds = [(r, grid[j]) for r in range(repeats) for j in rng.permutation(len(grid))]
    if grid_part is not None:
        part, parts = grid_part
        rounds = [x for i, x in enumerate(rounds) if i % parts == part]
    return rounds


def _measure_rounds(reader: DirectReader, grid: list[GridKey],
                    rounds: list[tuple[int, GridKey]], *, duration_s: float, warmup_s: float,
                    batch_s: float, rng: np.random.Generator, quiet: bool,
                    capped: bool = False) -> dict[GridKey, list[dict[str, float]]]:
    """Measure the rounds in order: every point's repeats (`capped`: behind a byte cap)."""
    min_reads_per_qd = CAPPED_MIN_READS_PER_QD if capped else MIN_READS_PER_QD
    results: dict[GridKey, list[dict[str, float]]] = {g: [] for g in grid}
    for _, key in progress(rounds, total=len(rounds), desc="calibrate", quiet=quiet):
        chunk, qd, n, pattern, span = key
        if n is None:
            last = results[key][-1]["throughput_mb_s"] if results[key] else None
            hint = last * 1e6 / chunk if last and np.isfinite(last) else None
            got = measure_point(reader, chunk, qd, duration_s=duration_s, warmup_s=warmup_s,
                                rng=rng, rate_hint_per_s=hint,
                                min_reads_per_qd=min_reads_per_qd)
        else:
            got = measure_batch_point(reader, chunk, qd, n, duration_s=batch_s, rng=rng,
                                      pattern=pattern, span_bytes=span)
        results[key].append(got)
    return results


def _points(results: dict[GridKey, list[dict[str, float]]],
            one_per_measurement: bool) -> list[DevicePoint]:
    """The median of each measured point's repeats, or (for a grid part, whose caller takes
    the medians over all parts' points) one point per measurement."""
    if not one_per_measurement:
        return [median_point(chunk, qd, reps, batch_reads=n, pattern=pattern, span_bytes=span)
                for (chunk, qd, n, pattern, span), reps in results.items() if reps]
    return [median_point(chunk, qd, [rep], batch_reads=n, pattern=pattern, span_bytes=span)
            for (chunk, qd, n, pattern, span), reps in results.items() for rep in reps]


def _measured_info(reader: DirectReader, path: str | os.PathLike, with_batches: bool, *,
                   created: bool, duration_s: float, warmup_s: float, repeats: int,
                   total_s: float) -> MeasuredInfo:
    """The profile's `measured` section: method, where, when, and how long."""
    return MeasuredInfo(
        method=f"flashsim calibrate: DirectReader ({_ENGINE_WORDS[reader.engine]}) into "
               + ("huge-page-backed buffers" if transparent_huge_pages_enabled() else
                  "4 KiB-page buffers (transparent huge pages off)")
               + ", random chunk-aligned offsets over the whole file, closed loop"
               + ("; short-batch points: median wall time of back-to-back read_batch calls of "
                  "n reads (as validate and the decode read a plan)" if with_batches else "")
               + "; value = median of repeats run in rounds over the grid, each round in "
                 "random order",
        date=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        # the reader's buffers are madvised for huge pages; the kernel grants them unless off
        buffers=("hugepage" if reader.huge_pages and transparent_huge_pages_enabled()
                 else "4k-pages"),
        o_direct=reader.o_direct, file_path=os.fspath(path), file_bytes=reader.file_bytes,
        point_duration_s=duration_s, warmup_s=warmup_s, repeats=repeats,
        total_duration_s=round(total_s, 1),
        notes=("data file created for this run" if created else "existing data file reused")
        + ("" if reader.o_direct else "; O_DIRECT unavailable: reads went through the page "
                                      "cache (--allow-page-cache)"),
        **describe_location(path))
