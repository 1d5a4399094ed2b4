"""The mmap baseline for real: the weight store mapped into memory and read through the OS page
cache, inside a memory cgroup whose limit is the page-cache budget.

`MmapWeightSource` is an `FFNWeightSource`: for every (token, layer) it gathers the rows of
the predicted neurons (or, under `MmapDenseFFN`, of every neuron) straight from the mapping,
in file order, so a row not in the page cache faults and the kernel reads it with its
read-around. I/O + memory is the gather itself (the faults happen inside it); converting
the fp16 rows to the fp32 working matrix is the memory part that follows.

`run_in_memory_cgroup` runs such work in a forked child moved into a fresh memory cgroup:
the child prepares (its own allocations are charged then), the limit is set to what it
holds plus the budget, the file's cached pages are dropped, and the child's page faults
(minor, major) are counted with getrusage. The group is removed afterwards, whatever
happens (also on Ctrl-C).
"""

from __future__ import annotations

import mmap
import os
import pickle
import resource
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data import bundled_model_dir, default_predictors_path
from ..device.cgroup import MemoryGroup, memory_root
from ..errors import InputError
from ..layout.placement import Placement
from ..model.checkpoint import Checkpoint, load_checkpoint
from ..model.opt import OPTModel
from ..model.predictor import PredictorSet
from ..model.sampling import check_top_p
from ..model.sparse import SparseFFN, one_blas_thread
from ..model.tokenizer import check_request, load_tokenizer, prompt_ids
from .runtime import TokenTimes, _decode_tokens
from .store import WeightStore, _dtype

CGROUP_PREFIX = "flashsim-mmap-"
DECODE_SLACK_BYTES = 4 << 20
"""Room the decode's limit leaves above the page-cache budget for its transient arrays (the
dense FFN holds a layer's rows in fp16 and fp32 at once: 3 MiB for opt-mini); without it
the kernel would kill the decode rather than evict (anonymous memory cannot be reclaimed
without swap)."""
ADVICE = {"normal": mmap.MADV_NORMAL, "random": mmap.MADV_RANDOM}
"""madvise of the mapping: normal (the disk's read-around) or random (no read-around)."""


def drop_file_cache(path: str | os.PathLike) -> None:
    """Evict the file's pages from the page cache (fsync, then POSIX_FADV_DONTNEED): the next
    run starts cold. Pages still mapped by a process stay, so unmap first."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def faults() -> tuple[int, int]:
    """(minor, major) page faults of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_minflt, ru.ru_majflt


class MappedStore:
    """A store file mapped read-only, seen as rows of d_model weights (fp16 for opt-mini)."""

    def __init__(self, store: WeightStore, placement: Placement, advice: str = "normal") -> None:
        if advice not in ADVICE:
            raise InputError(f"unknown madvise {advice!r}", key="advice",
                             expected="'normal' or 'random'")
        if store.digest != placement.digest():
            raise InputError(f"store has layout {store.index['layout']['name']!r}",
                             file=store.path, key="placement.digest",
                             expected="a store built with the mmap layout's placement")
        g = placement.geometry
        self.placement = placement
        self._fd = os.open(store.path, os.O_RDONLY)
        try:
            self._map = mmap.mmap(self._fd, store.file_bytes, prot=mmap.PROT_READ)
        except BaseException:
            os.close(self._fd)
            raise
        self._map.madvise(ADVICE[advice])
        self.rows_view = np.frombuffer(self._map, dtype=_dtype(g)).reshape(-1, g.d_model)
        row = g.row_bytes
        self._fc1 = placement.fc1_offset_bytes // row  # row index of each neuron's fc1 row
        self._fc2 = placement.fc2_offset_bytes // row

    def gather(self, layer: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(fc1 rows, fc2 columns) of `ids` as stored, and the seconds of the gather.

        The rows are touched in file order (sorted row index), as a reader of the placement's
        order would; faults and the copy out of the page cache both happen here."""
        idx = np.concatenate([self._fc1[layer, ids], self._fc2[layer, ids]])
        order = np.argsort(idx, kind="stable")
        t0 = time.perf_counter()
        got = self.rows_view[idx[order]]
        dt = time.perf_counter() - t0
        out = np.empty_like(got)
        out[order] = got
        n = len(ids)
        return out[:n], out[n:], dt

    def close(self) -> None:
        self.rows_view = None  # type: ignore[assignment]  # release the buffer export first
        self._map.close()
        os.close(self._fd)


class MmapWeightSource:
    """FFN rows gathered from the mapped store at every (token, layer) (see the module doc)."""

    def __init__(self, mapped: MappedStore, ckpt: Checkpoint) -> None:
        self.mapped = mapped
        self.geometry = ckpt.geometry
        self.fc1_b = [l.fc1_b for l in ckpt.layers]
        self.fc2_b = [l.fc2_b for l in ckpt.layers]
        self.token = -1
        self.times = TokenTimes()
        self.predicted: list[list[np.ndarray]] = [[] for _ in range(ckpt.geometry.n_layers)]

    def begin_token(self, t: int) -> None:
        self.token = t
        self.times = TokenTimes()

    def end_token(self) -> TokenTimes:
        return self.times

    def rows(self, layer: int, neuron_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """fp32 (fc1 rows, fc1 bias, fc2 cols) of `neuron_ids`, read through the page cache."""
        ids = np.asarray(neuron_ids, np.int64)
        self.predicted[layer].append(ids.astype(np.int32))
        fc1, fc2, io_s = self.mapped.gather(layer, ids)
        t0 = time.perf_counter()
        fc1, fc2 = fc1.astype(np.float32), fc2.astype(np.float32)
        self.times.mem_s += time.perf_counter() - t0
        self.times.io_s += io_s
        self.times.bytes_read += fc1.nbytes // 2 + fc2.nbytes // 2  # bytes gathered (fp16)
        self.times.neurons_loaded += len(ids)
        return fc1, self.fc1_b[layer][ids], fc2

    def fc2_bias(self, layer: int) -> np.ndarray:
        return self.fc2_b[layer]


class MmapDenseFFN:
    """The dense FFN (every neuron, as llama.cpp) with its weights gathered from the mapping."""

    def __init__(self, source: MmapWeightSource) -> None:
        self.source = source
        self._all = np.arange(source.geometry.d_ffn, dtype=np.int64)

    def __call__(self, layer: int, resid: np.ndarray, x: np.ndarray) -> np.ndarray:
        fc1_w, fc1_b, fc2_t = self.source.rows(layer, self._all)
        h = x @ fc1_w.T
        h += fc1_b
        np.maximum(h, 0.0, out=h)
        return h @ fc2_t + self.source.fc2_bias(layer)


Prepare = Callable[[], Callable[[], Any]]
"""Builds the work in the child (its allocations charged before the limit) and returns it."""


def run_in_memory_cgroup(prepare: Prepare, budget_bytes: int | None,
                         drop: str | os.PathLike | None = None, slack_bytes: int = 0
                         ) -> tuple[Any, dict[str, Any]]:
    """(the work's result, what the cgroup saw) of `prepare()()` run in a forked child inside
    a fresh memory cgroup limited to what the child holds after `prepare` plus
    `budget_bytes` plus `slack_bytes` (the work's own transient arrays, charged too);
    `drop`'s cached pages are dropped just before the work. Without a budget the child runs
    in no group (and needs no root)."""
    group = None
    if budget_bytes is not None:
        if budget_bytes <= 0:
            raise InputError(f"page-cache budget {budget_bytes}", key="budget_bytes",
                             expected="bytes > 0")
        group = MemoryGroup(memory_root(), CGROUP_PREFIX + uuid.uuid4().hex[:12])
        group.create()
    pid = -1
    try:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            _child(group, prepare, budget_bytes + slack_bytes if group else None, drop,
                   write_fd)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
        os.waitpid(pid, 0)
        pid = -1
        killed = group is not None and group.oom_kills() > 0
    finally:
        if pid > 0:  # interrupted: end the child this call started
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if group is not None:
            group.remove()
    if killed:
        raise InputError(f"budget {budget_bytes} bytes: the memory cgroup killed the reader "
                         "(out of memory: the faults' pages could not be reclaimed in time)",
                         key="budget_bytes", expected="a larger budget")
    if not payload:
        raise RuntimeError("the mmap child died without a result")
    status, value, info = pickle.loads(payload)
    if status != "ok":
        raise value
    return value, info


def _child(group: MemoryGroup | None, prepare: Prepare, budget_bytes: int | None,
           drop: str | os.PathLike | None, write_fd: int) -> None:
    """The forked side of `run_in_memory_cgroup`: join, prepare, limit, drop, work, report."""
    code = 0
    try:
        info: dict[str, Any] = {}
        if group is not None:
            group.join(os.getpid())
        work = prepare()
        if group is not None:
            held = group.usage_bytes()
            group.set_limit(held + int(budget_bytes))
            info.update(held_bytes=held, limit_bytes=held + int(budget_bytes))
        if drop is not None:
            drop_file_cache(drop)
        minor0, major0 = faults()
        value = work()
        minor1, major1 = faults()
        info.update(minor_faults=minor1 - minor0, major_faults=major1 - major0)
        if group is not None:
            stat = group.stat()
            info.update(cache_bytes=stat.get("cache"), rss_bytes=stat.get("rss"),
                        max_usage_bytes=int((group.dir / "memory.max_usage_in_bytes")
                                            .read_text()))
        payload = pickle.dumps(("ok", value, info))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        payload = pickle.dumps(("error", _picklable(exc), {}))
        code = 1
    try:
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
    finally:
        os._exit(code)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def generate_mmap(store_path: str | os.PathLike, layout: Any, *, prompt_text: str,
                  n_tokens: int, model_dir: str | os.PathLike | None = None, seed: int = 0,
                  top_p: float | None = 0.9, threshold: float | None = None,
                  predictors: str | os.PathLike | None = None, advice: str = "normal",
                  ) -> dict[str, Any]:
    """Decode `prompt_text` + `n_tokens` with the FFN rows read through the page cache of the
    mapped store, inside a memory cgroup of `layout.budget_bytes` (an `MmapLayout`: its
    pattern picks the sparse decode or the dense one). Same prompt handling, sampling and
    seed use as the in-DRAM decodes, so the tokens are theirs."""
    check_request(prompt_text, n_tokens)
    check_top_p(top_p)
    folder = Path(model_dir) if model_dir is not None else bundled_model_dir()
    store = WeightStore.open(store_path)

    def prepare() -> Callable[[], Any]:
        ckpt = load_checkpoint(folder)
        ids = prompt_ids(load_tokenizer(folder), ckpt.spec, prompt_text, n_tokens)
        mapped = MappedStore(store, layout.placement(ckpt.geometry), advice)
        source = MmapWeightSource(mapped, ckpt)
        if layout.pattern == "dense":
            ffn: Any = MmapDenseFFN(source)
        else:
            pred_path = Path(predictors) if predictors else default_predictors_path(folder)
            ffn = SparseFFN(PredictorSet.load(pred_path), source, threshold=threshold)
        model = OPTModel(ckpt)
        cache = model.new_cache(len(ids) + n_tokens)
        for a in (*cache.keys, *cache.values):
            a.fill(0.0)  # touched now: charged before the limit, not taken from the budget
        model.new_cache = lambda capacity=None: cache  # type: ignore[method-assign]

        def work() -> Any:
            try:
                with one_blas_thread():
                    return _decode_tokens(model, ffn, source, ids, n_tokens, top_p, seed)
            finally:
                mapped.close()
        return work

    (fed, generated, per_token), info = run_in_memory_cgroup(
        prepare, layout.budget_bytes, drop=store.path, slack_bytes=DECODE_SLACK_BYTES)
    return {"token_ids": np.asarray(fed, np.int64),
            "generated_ids": np.asarray(generated[:n_tokens], np.int64),
            "per_token": per_token, "cgroup": info, "layout": layout.name,
            "budget_bytes": layout.budget_bytes, "advice": advice}
