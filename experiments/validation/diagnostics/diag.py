"""Shared by the diagnostic scripts here: a layout's plan of the reference trace and its
weight store in the validation study's store folder (study.yaml; built there if missing)."""

from pathlib import Path

import numpy as np
import yaml

from flashsim.layout.plan import IOPlan
from flashsim.layout.registry import make_layout
from flashsim.io.reader import DirectReader
from flashsim.loader.store import WeightStore, store_for
from flashsim.data import REFERENCE_TRACE
from flashsim.model.checkpoint import load_checkpoint
from flashsim.trace.format import ActivationTrace

STUDY = Path(__file__).resolve().parents[1] / "study.yaml"


def plan_and_store(layout_name: str) -> tuple[IOPlan, WeightStore]:
    """The predicted-set plan of `layout_name` and the store it reads (study.yaml's folder)."""
    trace = ActivationTrace.load(REFERENCE_TRACE)
    layout = make_layout(layout_name)
    folder = Path(yaml.safe_load(STUDY.read_text())["store"])
    folder.mkdir(parents=True, exist_ok=True)
    store = store_for(load_checkpoint(None), layout, folder, trace.geometry)
    plan = layout.plan(trace, which="predicted")
    store.check_plan(plan)
    return plan, store


def random_reads(layout_name: str = "sparse", seed: int = 0):
    """read(chunk, n, qd): n random chunk-aligned reads of the layout's store at `qd` with the
    native-AIO reader (their BatchTimes), for history.py and warmth.py."""
    _, store = plan_and_store(layout_name)
    reader = DirectReader(store.path, engine="aio")
    rng = np.random.default_rng(seed)
    span = store.file_bytes

    def read(chunk: int, n: int, qd: int):
        return reader.read_batch(rng.integers(0, span // chunk, n) * chunk, np.full(n, chunk), qd)

    return read, rng


def times_after(read, rng, contexts: dict, chunks, rounds: int) -> dict[tuple[int, str], list[float]]:
    """µs of one QD 1 read of each chunk right after each context (called with the chunk),
    contexts in a fresh random order for every chunk of every round."""
    times: dict[tuple[int, str], list[float]] = {}
    for _ in range(rounds):
        for chunk in chunks:
            for name in rng.permutation(list(contexts)):
                contexts[name](chunk)
                times.setdefault((chunk, name), []).append(read(chunk, 1, 1).makespan_s * 1e6)
    return times
