"""The weight store each layout's plan is read from: one given file, or a folder holding each
layout's store (named by placement digest), built there only when asked (`build_stores`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..layout.base import Layout
from ..layout.plan import IOPlan
from ..loader.store import WeightStore, store_for
from ..model.checkpoint import load_checkpoint
from ..trace.format import ActivationTrace
from .spec import ValidationSpec


@dataclass(frozen=True)
class Stores:
    """One store per plan (the same object for all with a store file) and their folder."""

    stores: list[WeightStore]
    folder: Path
    """Where the calibration file and fio's job files go."""


def open_stores(spec: ValidationSpec, trace: ActivationTrace, layouts: list[Layout],
                plans: list[IOPlan]) -> Stores:
    """Open (or build) the store of every layout and check that each holds its plan."""
    path = Path(spec.store)
    if path.is_file():
        stores = Stores([WeightStore.open(path)] * len(plans), path.parent)
    else:
        store_folder(path, spec.build_stores)
        ckpt = load_checkpoint(spec.model_dir)
        stores = Stores([store_for(ckpt, lay, path, trace.geometry, build=spec.build_stores)
                         for lay in layouts], path)
    model_sha = trace.meta.get("model_sha256")
    for store, plan in zip(stores.stores, plans):
        store.check_plan(plan, model_sha256=model_sha)
    return stores


def store_folder(path: Path, build_stores: bool) -> Path:
    """The folder of the layouts' stores: it must exist unless `build_stores` (then it is
    made), so a mistyped --store is an error, not a fresh folder and a build."""
    if path.exists() and not path.is_dir():
        raise InputError("not a store file or folder", file=path, key="store")
    if not path.exists():
        if not build_stores:
            raise InputError("store does not exist", file=path, key="store",
                             expected="an existing store file or folder, or --build-stores "
                                      "(build_stores=True) to build the layouts' stores there")
        path.mkdir(parents=True, exist_ok=True)
    return path
