"""A drift probe during a run with a given profile: a few of the profile's own calibration
points re-measured between the decodes (one round per repetition, dealt out before the
row blocks as the in-run calibration is), so the prediction can follow the device's speed
over the run's minutes (device/drift.py) without re-fitting anything."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..device.calibrate import calibrate
from ..device.drift import Drift
from ..device.profile import DevicePoint, DeviceProfile
from ..io.reader import readable_bytes
from .schedule import Slot

PROBE_CHUNKS = (4096, 16384, 65536)
"""Chunk sizes probed: the decode's rows and merged runs of rows are 4–64 KiB reads."""
PROBE_BATCH_READS = (16, 64)
"""Short batches probed beside the steady points (a plan's layer batches are short)."""
PROBE_FILE = "drift-probe.bin"
"""The file probed when the profile's own calibration file is gone (same size, in the
store folder, removed at the end of the run)."""


@dataclass
class DriftProbe:
    """Where the probe reads, what it measures, and the measurements so far."""

    profile: DeviceProfile
    data_file: Path
    size_bytes: int
    chunks: list[int]
    qds: list[int]
    created: bool = False
    measured: list[DevicePoint] = field(default_factory=list)

    @classmethod
    def for_profile(cls, profile: DeviceProfile, qds: list[int], folder: Path
                    ) -> DriftProbe | None:
        """A probe of `profile`'s steady points at the run's QDs and PROBE_CHUNKS; None for a
        profile with none of them or without a file it was measured on."""
        have = {(int(p.chunk_bytes), int(p.queue_depth)) for p in profile.points
                if p.batch_reads is None and p.source == "measured"}
        chunks = sorted({c for c in PROBE_CHUNKS if any((c, q) in have for q in qds)})
        size = getattr(profile.measured, "file_bytes", None)
        if not chunks or not size:
            return None
        own = Path(profile.measured.file_path or "")
        if own.is_file() and readable_bytes(own) >= size:
            return cls(profile, own, int(size), chunks, sorted(set(qds)))
        return cls(profile, Path(folder) / PROBE_FILE, int(size), chunks, sorted(set(qds)),
                   created=True)

    def measure_part(self, slot: Slot, reader_engine: str = "auto") -> None:
        """The part of `slot`'s repetition's probe round that goes before its block."""
        m = self.profile.measured
        part = calibrate(self.data_file, size_bytes=self.size_bytes, chunks=self.chunks,
                         qds=self.qds, duration_s=float(m.point_duration_s or 0.4),
                         warmup_s=float(m.warmup_s or 0.1), repeats=1, seed=1000 + slot.rep,
                         engine=reader_engine, name="drift-probe",
                         batch_reads=PROBE_BATCH_READS, batch_qds=self.qds,
                         batch_max_chunk=None, quiet=True, grid_part=slot.calibration_part,
                         spans=(), clustered_reads=())
        if part is not None:
            self.measured.extend(part.points)

    def drift(self) -> Drift | None:
        """The drift factor of what was measured against the profile's points."""
        return Drift.of(self.profile.points, self.measured)

    def info(self, drift: Drift | None) -> dict[str, Any]:
        """What the report says about the probe."""
        return {"file": str(self.data_file), "file_bytes": self.size_bytes,
                "chunks": self.chunks, "qds": self.qds, "batch_reads": list(PROBE_BATCH_READS),
                "measurements": len(self.measured),
                **({"factor": None} if drift is None else drift.to_dict())}

    def remove_file(self) -> None:
        """Remove the probe's own file (never the profile's calibration file)."""
        if self.created:
            try:
                os.unlink(self.data_file)
            except FileNotFoundError:
                pass


def probe_of(profile: Any, qds: list[int], folder: Path) -> DriftProbe | None:
    """The probe of a given profile's own points (a path or a DeviceProfile; None for bare
    parameters or a profile without such points)."""
    if isinstance(profile, (str, os.PathLike)):
        profile = DeviceProfile.load(profile)
    if not isinstance(profile, DeviceProfile):
        return None
    return DriftProbe.for_profile(profile, qds, folder)
