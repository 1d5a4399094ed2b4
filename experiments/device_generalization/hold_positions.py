"""Where the throttle holds a decode's tokens back, the kernel against the model, with the
start state known: the sparse plan's 128 tokens read as one stream (its batches one after
another, the store's reads placed in the testbed's file), 5 times from an idle group and 5
times right after a random 50–250 ms of throttled reads; the model from an idle group.

Run inside the throttled testbed (~30 s):
  sudo flashsim device testbed run throttled --dir /var/tmp --size 2GiB -- python \
    experiments/device_generalization/hold_positions.py --file {path}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from flashsim.data import REFERENCE_TRACE
from flashsim.device import make_device
from flashsim.io.reader import DirectReader
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

HERE = Path(__file__).resolve().parent


def held(per_token_s: np.ndarray) -> list[int]:
    """Tokens that took over twice the stream's median: held back by the throttle."""
    x = np.asarray(per_token_s)
    return np.flatnonzero(x > 2 * np.median(x)).tolist()


def stream(reader: DirectReader, plan, base: int, qd: int) -> np.ndarray:
    """Each token's time, its layers' batches read one after another."""
    ptr, n_layers = plan.batch_ptr, plan.n_layers
    out = np.zeros(plan.n_tokens)
    for t in range(plan.n_tokens):
        t0 = time.perf_counter()
        for b in range(t * n_layers, (t + 1) * n_layers):
            if ptr[b + 1] > ptr[b]:
                reader.read_batch(plan.offset_bytes[ptr[b]:ptr[b + 1]] + base,
                                  plan.length_bytes[ptr[b]:ptr[b + 1]], qd)
        out[t] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", required=True)
    ap.add_argument("--profile", default="testbed-throttled-emmc")
    ap.add_argument("--out", default=str(HERE / "throttle" / "hold_positions.json"))
    args = ap.parse_args()
    plan = make_layout("sparse").plan(ActivationTrace.load(REFERENCE_TRACE).head(128))
    device = make_device(args.profile, "fast")
    rng = np.random.default_rng(0)
    reader = DirectReader(args.file, engine="aio")
    size = reader.file_bytes
    base = int(rng.integers(0, (size - plan.file_bytes) // 4096)) * 4096
    result = {}
    try:
        for qd in (8, 32):
            row: dict = {"idle": [], "after_reads": [], "after_reads_ms": []}
            for _ in range(5):
                time.sleep(0.5)  # idle past a slice: the group starts afresh
                row["idle"].append(held(stream(reader, plan, base, qd)))
            for _ in range(5):
                time.sleep(0.5)
                ms = float(rng.uniform(50, 250))
                t_end = time.perf_counter() + ms / 1e3
                while time.perf_counter() < t_end:
                    reader.read_batch(rng.integers(0, size // 4096, 64) * 4096,
                                      np.full(64, 4096), 8)
                row["after_reads_ms"].append(round(ms, 1))
                row["after_reads"].append(held(stream(reader, plan, base, qd)))
            free = device.inner.run_batches(plan.offset_bytes, plan.length_bytes,
                                            plan.batch_ptr, qd)
            made = device.sequence(plan.offset_bytes, plan.length_bytes, plan.batch_ptr, qd,
                                   free)
            row["model_idle"] = held(made.reshape(plan.n_tokens, plan.n_layers).sum(axis=1))
            result[str(qd)] = row
            print(f"QD {qd}: model {row['model_idle']}")
            for k in ("idle", "after_reads"):
                for h in row[k]:
                    print(f"  {k:11s} {h}")
    finally:
        reader.close()
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
