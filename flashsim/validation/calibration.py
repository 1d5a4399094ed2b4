"""A quick device calibration measured during the validation run itself: one round per
repetition, dealt out in parts between the row blocks, so the fit samples the disk's drift
over the same minutes as the measurement; per point the median over rounds, then the fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..device.calibrate import calibrate
from ..device.fit import fit_profile
from ..device.profile import DeviceProfile, median_point
from ..layout.plan import IOPlan
from ..loader.store import WeightStore
from .schedule import Slot
from .spec import DEFAULT_BATCH_READS, DEFAULT_CALIBRATION_BYTES, ValidationSpec

CALIBRATION_FILE = "calibration.bin"
"""The random-data file calibrated on (`calibrate_on="file"`), in the store folder."""
CLUSTERED_BATCH_READS = (16, 64)
"""Clustered short batches (reads near one another, like a plan's reads of one layer), at
the plans' QDs above 1: they tell the device's striping apart, which random offsets
cannot (a fit on random batches alone can put a layer's reads on one unit)."""
VALIDATE_BATCH_WEIGHT = 10.0
"""The fit's weight on short-batch points here: a plan is nothing but short batches, and the
steady-state points only keep the fit physical (weight 10 left every row's bias within
±16 %, weight 3 within ±21 %)."""


def calibration_grid(plans: list[IOPlan], qds: list[int], max_chunks: int = 4) -> list[int]:
    """Chunk sizes matched to the plans' reads: powers of two at quantiles of read bytes."""
    lengths = [p.length_bytes for p in plans if p.n_reads]
    if not lengths:
        return [4096]
    qs = np.quantile(np.concatenate(lengths), [0.1, 0.5, 0.9, 1.0])
    chunks = sorted({int(2 ** round(np.log2(max(q, 4096)))) for q in qs} | {4096})
    while len(chunks) > max_chunks + 1:
        chunks.pop(len(chunks) // 2)
    return chunks


def calibration_round(data_file: Path, plans: list[IOPlan], qds: list[int], *,
                      size_bytes: int = DEFAULT_CALIBRATION_BYTES, duration_s: float = 0.5,
                      seed: int = 0, allow_page_cache: bool = False, reader_engine: str = "auto",
                      batch_reads=DEFAULT_BATCH_READS, grid_part: tuple[int, int] | None = None,
                      pieces: int = 1) -> DeviceProfile | None:
    """One round of a quick calibration on `data_file` (created if missing): every point of
    a grid matched to the plans (chunk sizes at quantiles of their reads, the QDs and the
    powers of two below them), and short batches of `batch_reads` reads of those chunks at
    the plans' QDs (measured like a plan's batch), `pieces` times (each piece 1/pieces of
    `duration_s`; every piece of the grid in its own random order). A profile without a fit
    (`grid_part` = (j, k): only part j of k of the round; None if that part is empty)."""
    chunks = [c for c in calibration_grid(plans, qds) if c <= size_bytes]
    top = max(qds)
    qd_grid = sorted(set(qds) | {q for q in (1, 2, 4, 8, 16, 32, 64) if q <= top})
    piece_s = duration_s / int(pieces)
    return calibrate(data_file, size_bytes=size_bytes, chunks=chunks, qds=qd_grid,
                     duration_s=piece_s, warmup_s=0.1 / int(pieces), repeats=int(pieces),
                     seed=seed, allow_page_cache=allow_page_cache, engine=reader_engine,
                     name="validate-calibration",
                     batch_reads=batch_reads, batch_qds=sorted(set(qds)), batch_max_chunk=None,
                     batch_duration_s=piece_s / 2,
                     clustered_reads=CLUSTERED_BATCH_READS if batch_reads else (),
                     description="quick grid measured by flashsim validate --calibrate, "
                                 "rounds interleaved with the validation repetitions",
                     quiet=True, grid_part=grid_part, spans=())


def merge_rounds(rounds: list[Any], *, quick: bool = False,
                 batch_weight: float = VALIDATE_BATCH_WEIGHT,
                 correction: str = "measured-residual", quiet: bool = True) -> DeviceProfile:
    """One fitted profile from calibration rounds: per point the median over rounds
    (`quiet=False`: the fit's counter on a terminal)."""
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
    return fit_profile(profile, quick=quick, batch_weight=batch_weight, correction=correction,
                       quiet=quiet)


@dataclass
class Calibration:
    """The calibration of one run: where it reads, and the parts measured so far."""

    spec: ValidationSpec
    plans: list[IOPlan]
    data_file: Path
    size_bytes: int
    rounds: list[DeviceProfile | None] = field(default_factory=list)

    @classmethod
    def target(cls, spec: ValidationSpec, plans: list[IOPlan], stores: list[WeightStore],
               folder: Path) -> Calibration:
        """Over the largest store (the extent the plans read) or a random-data file."""
        if spec.calibrate_on == "store":
            biggest = max(stores, key=lambda s: s.file_bytes)
            return cls(spec, plans, biggest.path, biggest.file_bytes // 4096 * 4096)
        return cls(spec, plans, folder / CALIBRATION_FILE, spec.calibration_bytes)

    def measure_part(self, slot: Slot, reader_engine: str) -> None:
        """The part of `slot`'s repetition's round that goes before its block."""
        spec = self.spec
        self.rounds.append(calibration_round(
            self.data_file, self.plans, spec.qds, size_bytes=self.size_bytes,
            duration_s=spec.calibration_duration_s, seed=slot.rep,
            allow_page_cache=spec.allow_page_cache, reader_engine=reader_engine,
            batch_reads=spec.calibration_batch_reads, grid_part=slot.calibration_part,
            pieces=spec.calibration_pieces))

    def fit(self) -> tuple[DeviceProfile, dict[str, Any]]:
        """The profile fitted to all rounds, and what the report says about the fit."""
        prof = merge_rounds(self.rounds, quick=self.spec.quick_fit,
                            correction=self.spec.correction, quiet=self.spec.quiet)
        return prof, {"calibrated": True, "calibrated_on": str(self.data_file),
                      "correction": prof.correction,
                      "rounds": self.spec.reps, "pieces_per_round": self.spec.calibration_pieces,
                      "params": prof.params.model_dump(),
                      "fit_median_abs_error_pct": prof.fit.median_abs_error_pct,
                      "fit_worst_abs_error_pct": prof.fit.worst_abs_error_pct,
                      "fit_batch_weight": VALIDATE_BATCH_WEIGHT,
                      "points": [p.model_dump() for p in prof.points],
                      "point_errors": [e.model_dump() for e in prof.fit.points]}
