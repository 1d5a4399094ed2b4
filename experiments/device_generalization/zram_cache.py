"""zram: why plans run slower than their calibration promised. The plan's batches on its
store, read back to back as calibration reads its batches, against the same batches with
the reads reordered, resized or moved, and with 8 MiB of memory touched between batches (as
a decode's compute or another row's store would): the median batch time of each, in rounds
that interleave them; and the model's time for the same batches (the shipped zram profile,
calibrated over 2 GiB, and the one calibrated on the store).

    sudo flashsim device testbed run zram-ext4 --size 256MiB -- python \
        experiments/device_generalization/zram_cache.py --dir {dir}    # ~1 min
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from flashsim.data import REFERENCE_TRACE, TRAINING_TRACE
from flashsim.device import make_device
from flashsim.device.span import at_span
from flashsim.io.reader import DirectReader
from flashsim.trace.format import ActivationTrace
from flashsim.validation.setup import prepare
from flashsim.validation.spec import spec_from_options

HERE = Path(__file__).resolve().parent
PROFILES = {"model_2gib_us": "testbed-zram-ext4", "model_on_store_us": "testbed-zram-ext4-validated"}
SWEEP_BYTES = 8 << 20
"""Memory touched between batches in the swept variant: four times the L2, a quarter of the L3."""


def variants(plan, rng: np.random.Generator) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """The plan's non-empty batches, and the same batches changed in one respect each."""
    ptr, fb = plan.batch_ptr, plan.file_bytes
    plain = [(plan.offset_bytes[a:b].copy(), plan.length_bytes[a:b].copy())
             for a, b in zip(ptr[:-1], ptr[1:]) if b > a]
    mean = int(round(float(np.mean(plan.length_bytes)) / 4096)) * 4096

    def anywhere(n: int, length: int) -> np.ndarray:
        return rng.integers(0, (fb - length) // 4096, n) * 4096

    return {"plan": plain,
            "reordered": [(o[p], n) for o, n in plain for p in [rng.permutation(len(o))]
                          for n in [n[p]]],
            "one_size": [(np.minimum(o, fb - mean), np.full(len(o), mean)) for o, _ in plain],
            "moved": [(anywhere(len(o), int(n.max())), n) for o, n in plain]}


def measure(store_path: str, batches: dict, qd: int, rounds: int) -> dict[str, list[float]]:
    """Median batch time (µs) of each variant per round; `swept` is the plan with memory
    touched between its batches (outside the timing)."""
    sweep = np.ones(SWEEP_BYTES, np.uint8)
    reader = DirectReader(store_path, engine="aio")
    names = [*batches, "plan_swept"]
    out: dict[str, list[float]] = {n: [] for n in names}
    try:
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                times = []
                for off, length in batches["plan" if name == "plan_swept" else name]:
                    if name == "plan_swept":
                        sweep += 1
                    t0 = time.perf_counter()
                    reader.read_batch(off, length, qd)
                    times.append(time.perf_counter() - t0)
                out[name].append(float(np.median(times)) * 1e6)
    finally:
        reader.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="a folder on the zram file system")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(HERE / "zram_cache" / "results.json"))
    args = ap.parse_args()
    trace, train = ActivationTrace.load(REFERENCE_TRACE), ActivationTrace.load(TRAINING_TRACE)
    stores = Path(args.dir) / "stores"
    stores.mkdir(exist_ok=True)
    rows = []
    for layout in ("sparse", "windowed+bundled"):
        spec = spec_from_options([layout], [1], {
            "store": str(stores), "build_stores": True, "tokens": 128, "reps": 1,
            "reader_engine": "aio", "profile": PROFILES["model_2gib_us"]})
        setup = prepare(spec, trace, train)
        plan, store = setup.plans[0], setup.stores[0]
        batches = variants(plan, np.random.default_rng(1))
        for qd in (1, 8, 32):
            got = measure(str(store.path), batches, qd, args.rounds)
            row = {"layout": layout, "queue_depth": qd,
                   "reads_per_batch": float(np.mean([len(o) for o, _ in batches["plan"]])),
                   "measured_us": {k: float(np.median(v)) for k, v in got.items()},
                   "rounds_us": got}
            for key, profile in PROFILES.items():
                device = at_span(make_device(profile, "fast"), plan.file_bytes)
                off = np.concatenate([o for o, _ in batches["plan"]])
                length = np.concatenate([n for _, n in batches["plan"]])
                ptr = np.concatenate([[0], np.cumsum([len(o) for o, _ in batches["plan"]])])
                made = device.run_batches(off, length, ptr, qd)
                row[key] = float(np.median(made)) * 1e6
            rows.append(row)
            m = row["measured_us"]
            print(f"{layout:17s} QD {qd:2d}: plan {m['plan']:6.1f} µs, reordered "
                  f"{m['reordered']:6.1f}, one size {m['one_size']:6.1f}, moved {m['moved']:6.1f}, "
                  f"memory touched between {m['plan_swept']:6.1f}; model (2 GiB / on the "
                  f"store) {row['model_2gib_us']:6.1f} / {row['model_on_store_us']:6.1f}")
    Path(args.out).write_text(json.dumps({"sweep_bytes": SWEEP_BYTES, "rows": rows},
                                         indent=1) + "\n")


if __name__ == "__main__":
    main()
