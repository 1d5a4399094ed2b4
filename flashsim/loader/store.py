"""Weight store: a model's FFN weights written exactly where a layout's Placement says.

Two files:
- the data file FILE: `placement.file_bytes` bytes; fc1 row i of layer l at
  `fc1_offset_bytes[l, i]`, fc2 column i at `fc2_offset_bytes[l, i]`, duplicate copies of
  closest-friend placements too, every other byte zero; weights in the checkpoint's stored
  dtype (fp16 for opt-mini), little-endian. Layer regions start on the block size, so every
  IOPlan read of the layout is a valid O_DIRECT read of this file.
- the index FILE.json (format "flashsim-weight-store", version 1): model name, geometry and
  weights sha256; layout name and parameters; the placement summary and digest; the file
  size; the sha256 of every layer region.

Both are written atomically (temp file + rename) after a free-space check. `WeightStore.open`
reads the index and checks the data file's size; `check_plan` refuses a plan of another
model or another placement (the digest covers every offset).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write, atomic_write_text, check_free_space
from ..cliutil import to_jsonable
from ..errors import InputError
from ..geometry import ModelGeometry
from ..layout.base import Layout
from ..layout.placement import Placement
from ..layout.plan import IOPlan
from ..progress import progress

STORE_FORMAT = "flashsim-weight-store"
STORE_FORMAT_VERSION = 1
SPACE_MARGIN_BYTES = 16 << 20
_DTYPES = {2: np.float16, 4: np.float32}


def index_path(path: str | os.PathLike) -> Path:
    """The index (sidecar JSON) of the data file `path`."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def _dtype(geometry: ModelGeometry) -> type:
    if geometry.dtype_bytes not in _DTYPES:
        raise InputError(f"{geometry.dtype_bytes}-byte weights are not supported",
                         key="dtype_bytes", expected="2 (fp16) or 4 (fp32)")
    return _DTYPES[geometry.dtype_bytes]


def _place(region: np.ndarray, rel_offsets: np.ndarray, rows: np.ndarray) -> None:
    """Copy rows (bytes [n, row_bytes]) into `region` at byte offsets `rel_offsets`."""
    row_bytes = rows.shape[1]
    if len(region) % row_bytes == 0 and np.all(rel_offsets % row_bytes == 0):
        region.reshape(-1, row_bytes)[rel_offsets // row_bytes] = rows
    else:  # general case: byte-wise scatter
        idx = rel_offsets[:, None] + np.arange(row_bytes, dtype=np.int64)[None, :]
        region[idx] = rows


def layer_region_bytes(placement: Placement, layer: int, fc1: np.ndarray,
                       fc2_t: np.ndarray) -> np.ndarray:
    """The bytes of layer `layer`'s region (uint8) for fc1 [d_ffn, d_model] and fc2ᵀ rows."""
    g = placement.geometry
    dtype = _dtype(g)
    lo, hi = int(placement.layer_offset_bytes[layer]), int(placement.layer_offset_bytes[layer + 1])
    region = np.zeros(hi - lo, dtype=np.uint8)
    fc1_b = np.ascontiguousarray(fc1, dtype=dtype).view(np.uint8).reshape(g.d_ffn, g.row_bytes)
    fc2_b = np.ascontiguousarray(fc2_t, dtype=dtype).view(np.uint8).reshape(g.d_ffn, g.row_bytes)
    _place(region, placement.fc1_offset_bytes[layer] - lo, fc1_b)
    _place(region, placement.fc2_offset_bytes[layer] - lo, fc2_b)
    c_layer, c_neuron, c_fc1, c_fc2 = placement.copies()
    sel = c_layer == layer
    if np.any(sel):
        _place(region, c_fc1[sel] - lo, fc1_b[c_neuron[sel]])
        _place(region, c_fc2[sel] - lo, fc2_b[c_neuron[sel]])
    return region


@dataclass
class WeightStore:
    """An opened store: data file path, its index, the placement summary it was built for."""

    path: Path
    index: dict[str, Any]

    @property
    def digest(self) -> str:
        return self.index["placement"]["digest"]

    @property
    def file_bytes(self) -> int:
        return int(self.index["file_bytes"])

    @property
    def geometry(self) -> ModelGeometry:
        return ModelGeometry(**self.index["model"]["geometry"])

    @classmethod
    def open(cls, path: str | os.PathLike) -> WeightStore:
        """Read and check the index and the data file size; InputError on any mismatch."""
        p = Path(path)
        idx = index_path(p)
        if not p.is_file():
            raise InputError("weight store does not exist", file=p,
                             expected="a file made by `flashsim store build`")
        if not idx.is_file():
            raise InputError("weight store has no index", file=idx,
                             expected="the .json index written next to the store")
        try:
            index = json.loads(idx.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable store index ({exc})", file=idx) from None
        if not isinstance(index, dict) or index.get("format") != STORE_FORMAT:
            raise InputError("not a flashsim weight-store index", file=idx, key="format",
                             expected=STORE_FORMAT)
        if index.get("version") != STORE_FORMAT_VERSION:
            raise InputError(f"store format version {index.get('version')}", file=idx,
                             key="version", expected=str(STORE_FORMAT_VERSION))
        for key in ("model", "layout", "placement", "file_bytes", "layers"):
            if key not in index:
                raise InputError("key is missing", file=idx, key=key)
        size = p.stat().st_size
        if size != int(index["file_bytes"]):
            raise InputError(f"store file has {size} bytes, its index says "
                             f"{index['file_bytes']} (truncated or replaced)", file=p,
                             key="file_bytes", expected="the file as `flashsim store build` "
                             "wrote it (rebuild it)")
        return cls(p, index)

    def check_plan(self, plan: IOPlan, *, model_sha256: str | None = None) -> None:
        """InputError unless `plan` reads this store: same model geometry and placement."""
        g = self.geometry
        diff = g.mismatch(plan.geometry)
        if diff or g.name != plan.geometry.name:
            raise InputError(f"store holds {g.name}, the plan is for {plan.geometry.name}"
                             + (f" ({diff})" if diff else ""), file=self.path, key="model",
                             expected="a store built from the plan's model")
        mine = self.index["model"].get("weights_sha256")
        if model_sha256 and mine and model_sha256 != mine:
            raise InputError("store was built from other weights than the trace's model",
                             file=self.path, key="model.weights_sha256",
                             expected=f"weights {model_sha256[:12]}…")
        want = plan.meta.get("placement", {}).get("digest")
        if want != self.digest:
            raise InputError(f"store has layout {self.index['layout']['name']!r} (placement "
                             f"{self.digest}), the plan is {plan.layout!r} (placement {want})",
                             file=self.path, key="placement.digest",
                             expected=f"a store built with --layout {plan.layout}")
        if plan.file_bytes != self.file_bytes:
            raise InputError(f"plan expects a {plan.file_bytes}-byte file, the store has "
                             f"{self.file_bytes}", file=self.path, key="file_bytes")

    def verify(self) -> list[int]:
        """Layers whose region checksum does not match the index (empty: the file is intact)."""
        bad = []
        with open(self.path, "rb") as f:
            for entry in self.index["layers"]:
                f.seek(int(entry["offset_bytes"]))
                data = f.read(int(entry["length_bytes"]))
                if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    bad.append(int(entry["layer"]))
        return bad


def build_store(ckpt: Any, layout: Layout, out: str | os.PathLike, *,
                placement: Placement | None = None) -> WeightStore:
    """Write `ckpt`'s FFN weights in `layout`'s placement to `out` (+ `out`.json), atomically.

    `ckpt` is a loaded Checkpoint (fp32 arrays of weights stored as fp16 or fp32).
    """
    g = ckpt.geometry
    dtype = _dtype(g)
    placement = placement or layout.placement(g)
    out = Path(out)
    if out.is_dir():
        raise InputError("output is a folder", file=out, expected="a file path for the store")
    check_free_space(out, placement.file_bytes + SPACE_MARGIN_BYTES)
    layers = []
    with atomic_write(out, "wb") as handle:
        pos = 0
        for l, w in progress(enumerate(ckpt.layers), total=len(ckpt.layers), unit="layer",
                             desc=f"store {out.name}"):
            lo = int(placement.layer_offset_bytes[l])
            if lo > pos:
                handle.write(bytes(lo - pos))
            region = layer_region_bytes(placement, l, w.fc1_w, w.fc2_t)
            handle.write(region.tobytes())
            pos = lo + len(region)
            layers.append({"layer": l, "offset_bytes": lo, "length_bytes": len(region),
                           "sha256": hashlib.sha256(region.tobytes()).hexdigest()})
        if pos < placement.file_bytes:
            handle.write(bytes(placement.file_bytes - pos))
    index = {
        "format": STORE_FORMAT, "version": STORE_FORMAT_VERSION,
        "model": {"name": g.name, "geometry": g.to_dict(), "path": str(ckpt.path),
                  "weights_sha256": ckpt.weights_sha256},
        "dtype": np.dtype(dtype).name, "byte_order": "little",
        "layout": {"name": layout.name, "params": _jsonable(layout.params())},
        "placement": placement.summary(),
        "file_bytes": placement.file_bytes,
        "layers": layers,
    }
    try:
        atomic_write_text(index_path(out), json.dumps(index, indent=2) + "\n")
    except BaseException:
        out.unlink(missing_ok=True)  # never a data file without its index
        raise
    return WeightStore(out, index)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return to_jsonable({k: v for k, v in params.items()})


def store_for(ckpt: Any, layout: Layout, folder: str | os.PathLike,
              geometry: ModelGeometry | None = None, *, build: bool = True) -> WeightStore:
    """The store of `layout` in `folder` (named by model, kind and digest), built if missing
    (with `build`; else a missing store is an InputError)."""
    g = geometry or ckpt.geometry
    placement = layout.placement(g)
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("store folder does not exist", file=folder, expected="a folder")
    path = folder / f"{g.name}-{placement.kind}-{placement.digest()}.ffn"
    if path.is_file() and index_path(path).is_file():
        store = WeightStore.open(path)
        if store.digest == placement.digest():
            return store
    if not build:
        raise InputError(f"no store of layout {layout.name!r} in the folder", file=path,
                         key="store", expected="a store built earlier, or --build-stores "
                                               "(build_stores=True) to build it")
    return build_store(ckpt, layout, path, placement=placement)
