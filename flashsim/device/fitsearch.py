"""The device fit's search: regularised least squares on log errors, a deterministic
finite-difference Jacobian, and a discrete search over units × stripes × host modes.

The answer must not hinge on the last bits of the CPU's arithmetic: finite-difference steps
are 1 % of a term (far above rounding noise), residuals are quantised, every start is fixed,
and candidates whose costs agree to a relative CLOSE_COST are a tie that goes to the
simpler form (`Form.simplicity`), never to whichever came out a hair lower.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.optimize import least_squares

from ..progress import progress_enabled
from .fast import FastDevice
from .fitspace import N_CORE, NAMES, TERMS, Form, Space, neighbours
from .predict import fit_values
from .profile import DeviceParams, DevicePoint
from .throttle import throttled

TOLERATED = math.log(1.12)
"""Errors beyond ±12 % get a heavy extra residual: close to minimax, every point in reach."""
PENALTY = 30.0
SOFT = 0.02
"""The penalty sets in smoothly over this much excess (log units)."""
PULL = 0.01
"""Weight of the pull toward 0 of a regularised coordinate: a term of one base time costs as
much as a 1 % error on one value. Far below the points' noise, so the fit is not bent; enough
to pick one answer where terms trade off (a delay the host or the link could hold)."""
STEP = 0.01
"""Finite-difference step in the coordinates: 1 % of a core term or of the base time."""
QUANTUM_DIGITS = 9
"""Residuals are rounded to 1e-9 (log units): last-bit differences of the arithmetic vanish."""
CLOSE_COST = 1e-3
"""Costs this close (relative) are a tie: decided by simplicity, not by rounding noise."""


@dataclass
class Problem:
    """Points to fit, their weights and the evaluator's workers."""

    points: list[DevicePoint]
    space: Space
    batch_weight: float
    pool: Executor | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex, init=False, compare=False)
    """Names this problem to the worker processes, which keep the last one they were sent."""
    pickled: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        # a worker evaluates: it needs no pool of its own (nor the pickle it came in)
        return {**self.__dict__, "pool": None, "pickled": None}

    def log_errors(self, u: np.ndarray, form: Form, n_reads: int | None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """log(model / measured) of every throughput, mean latency and makespan, and the
        weight of each."""
        device = throttled(FastDevice(self.space.params(u, form)), self.space.throttle)
        res, weights = [], []
        for p in self.points:
            got = fit_values(device, p, n_reads)
            if p.batch_reads is not None:
                res.append(math.log(got[0] / p.batch_makespan_us))
                weights.append(self.batch_weight)
                continue
            res.append(math.log(got[0] / p.throughput_mb_s))
            weights.append(1.0)
            if p.latency_mean_us is not None:
                res.append(math.log(got[1] / p.latency_mean_us))
                weights.append(1.0)
        return np.round(np.asarray(res), QUANTUM_DIGITS), np.asarray(weights)

    def residuals(self, u: np.ndarray, form: Form, n_reads: int | None) -> np.ndarray:
        """Weighted log errors, the penalty on errors beyond TOLERATED, the pulls toward 0."""
        res, weights = self.log_errors(u, form, n_reads)
        excess = np.maximum(0.0, np.abs(res) - TOLERATED)
        # smooth onset (quadratic over the first SOFT, then linear): a kink in a residual
        # would stall the trust region on points that sit at the threshold
        hinge = np.where(excess < SOFT, excess * excess / (2 * SOFT), excess - SOFT / 2)
        return np.concatenate([weights * res, PENALTY * weights * hinge,
                               PULL * self.space.pulls(form) * u])

    def residuals_at(self, us: list[np.ndarray], form: Form, n_reads: int | None
                     ) -> list[np.ndarray]:
        """`residuals` at each of `us`, in the evaluator's workers: processes (the model's
        Python between its compiled kernels holds the GIL: threads ran 1.2 CPUs' worth on 2)
        or threads where processes cannot be had."""
        if self.pool is None:
            return [self.residuals(u, form, n_reads) for u in us]
        if isinstance(self.pool, ProcessPoolExecutor):
            blob = self._blob()
            return list(self.pool.map(_remote_residuals,
                                      [(self.token, blob, u, form, n_reads) for u in us]))
        return list(self.pool.map(lambda u: self.residuals(u, form, n_reads), us))

    def _blob(self) -> bytes:
        """This problem pickled once (a worker unpickles it the first time it sees it)."""
        if self.pickled is None:
            self.pickled = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        return self.pickled


_WORKER_PROBLEM: dict[str, Problem] = {}
"""A worker process's current problem, by token (one at a time: a fit works on one)."""


def _remote_residuals(args: tuple) -> np.ndarray:
    """In a worker: `residuals` of the problem the token names (unpickled when new)."""
    token, blob, u, form, n_reads = args
    if token not in _WORKER_PROBLEM:
        _WORKER_PROBLEM.clear()
        _WORKER_PROBLEM[token] = pickle.loads(blob)
    return _WORKER_PROBLEM[token].residuals(u, form, n_reads)


def make_pool() -> Executor | None:
    """Workers for the Jacobian's columns, one per usable CPU (at most 4): forked processes,
    or threads inside a daemonic process (a Dask worker), which may not have children."""
    n = min(4, len(os.sched_getaffinity(0)))
    if n < 2:
        return None
    if multiprocessing.current_process().daemon or "fork" not in \
            multiprocessing.get_all_start_methods():
        return ThreadPoolExecutor(n)
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"))


def jacobian(problem: Problem, u: np.ndarray, f0: np.ndarray, form: Form,
             n_reads: int | None, bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Forward differences with a fixed STEP, inward at an upper bound."""
    lo, hi = bounds
    steps = np.where(u + STEP <= hi, STEP, -STEP)
    shifted = []
    for j in range(len(u)):
        v = u.copy()
        v[j] += steps[j]
        shifted.append(v)
    got = problem.residuals_at(shifted, form, n_reads)
    return np.column_stack([(r - f0) / s for r, s in zip(got, steps)])


class Candidate(NamedTuple):
    """A fitted form: its cost (half the sum of squared residuals), coordinates, evaluations."""

    cost: float
    form: Form
    u: np.ndarray


def solve(problem: Problem, form: Form, u0: np.ndarray, n_reads: int | None,
          iterations: int) -> Candidate:
    """Trust-region least squares from u0 for at most `iterations` steps."""
    bounds = problem.space.bounds(form)
    cache: dict[bytes, np.ndarray] = {}

    def fun(u: np.ndarray) -> np.ndarray:
        key = u.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = problem.residuals(u, form, n_reads)
        return cache[key]

    def jac(u: np.ndarray) -> np.ndarray:
        return jacobian(problem, u, fun(u), form, n_reads, bounds)

    r = least_squares(fun, u0, jac=jac, bounds=bounds, method="trf", max_nfev=iterations,
                      ftol=1e-5, xtol=1e-5, gtol=1e-6)
    return Candidate(float(r.cost), form, r.x)


def core_form(form: Form) -> Form:
    """The form with only its core terms (and a batch start cost) free."""
    return form._replace(free=tuple(j for j in form.free
                                    if j < N_CORE or NAMES[j] == "batch_start_us"))


def solve_staged(problem: Problem, form: Form, u0: np.ndarray, n_reads: int | None,
                 iterations: int) -> Candidate:
    """The core terms first with the others absent, then all from there: a term comes in
    only where the data call for it, and the fit does not start in a basin where extra terms
    stand in for the core ones (a wide link slowed by congestion for a narrow one)."""
    space, points = problem.space, problem.points
    core = core_form(form)
    first = solve(problem, core, space.carry(u0, form, core, points), n_reads, iterations)
    return solve(problem, form, space.carry(first.u, core, form, points), n_reads, iterations)


def best_of(candidates: list[Candidate]) -> Candidate:
    """The lowest cost, costs within CLOSE_COST of it counting as equal: then the simplest
    form, then the least of the regularised terms."""
    low = min(c.cost for c in candidates)
    close = [c for c in candidates if c.cost <= low * (1.0 + CLOSE_COST) + 1e-12]
    return min(close, key=lambda c: (c.form.simplicity(), _pulled_norm(c)))


def _pulled_norm(c: Candidate) -> float:
    """Sum of the regularised coordinates (rounded: a tie-break must not hinge on last bits)."""
    pulled = [k for k, j in enumerate(c.form.free) if TERMS[j].pulled]
    return round(float(np.sum(np.abs(c.u[pulled]))), 6)


@dataclass(frozen=True)
class Effort:
    """How hard a search works: reads per steady-state point and steps per solve at each
    stage (None reads: the full count that predictions use)."""

    seeds: tuple[tuple[int, int], ...]
    screen_reads: int
    screen_steps: int
    move_steps: int
    final_reads: int
    final_steps: int
    polish_steps: int
    keep_ratio: float
    """Host modes whose best screened cost is within this factor of the best are searched."""


FULL = Effort(seeds=((4, 65536), (32, 16384)), screen_reads=300, screen_steps=12,
              move_steps=6, final_reads=1000, final_steps=12, polish_steps=6, keep_ratio=2.0)
QUICK = Effort(seeds=((8, 65536),), screen_reads=300, screen_steps=12, move_steps=5,
               final_reads=1000, final_steps=10, polish_steps=5, keep_ratio=1.0)
MOVE_GAIN = 0.02
"""A neighbouring form replaces the current one only if it lowers the cost by this much
(relative): smaller gains at the screening read count are within its sampling noise, where
the points cannot tell the forms apart."""


def descend(problem: Problem, start: Candidate, effort: Effort,
            seen: dict[Form, Candidate], tick: Callable[[], None]) -> Candidate:
    """Move to the best neighbouring form (warm-started) while it lowers the cost by more
    than MOVE_GAIN; every form is fitted once."""
    space, points = problem.space, problem.points
    here = start
    while True:
        trial = []
        for f in neighbours(here.form, space):
            if f not in seen:
                u0 = space.carry(here.u, here.form, f, points)
                seen[f] = solve(problem, f, u0, effort.screen_reads, effort.move_steps)
                tick()
            trial.append(seen[f])
        better = [c for c in trial if c.cost < here.cost * (1.0 - MOVE_GAIN)]
        if not better:
            return here
        here = best_of(better)


def search(problem: Problem, modes: tuple[tuple[int, bool], ...], effort: Effort,
           tick: Callable[[], None]) -> Candidate:
    """Seeds per host mode (staged); from each kept mode's best seed a descent over the
    grid, then two fits with more reads: on from where the descent ended, and staged again
    from its core terms. The best of those all, polished with the full read count."""
    space, points = problem.space, problem.points
    seen: dict[Form, Candidate] = {}
    for host_cpus, passes in modes:
        for n_units, stripe in effort.seeds:
            f = space.form(n_units, stripe, host_cpus, passes)
            if f not in seen:
                seen[f] = solve_staged(problem, f, space.initial(points, f),
                                       effort.screen_reads, effort.screen_steps)
                tick()
    per_mode = {}
    for c in seen.values():
        key = (c.form.host_cpus, c.form.passes)
        per_mode[key] = best_of([c, per_mode[key]]) if key in per_mode else c
    low = min(c.cost for c in per_mode.values())
    finals = []
    for mode in sorted(per_mode, key=lambda m: per_mode[m].form.simplicity()):
        c = per_mode[mode]
        if c.cost > effort.keep_ratio * low * (1.0 + CLOSE_COST):
            continue
        c = descend(problem, c, effort, seen, tick)
        finals.append(solve(problem, c.form, c.u, effort.final_reads, effort.final_steps))
        finals.append(solve_staged(problem, c.form, c.u, effort.final_reads,
                                   effort.final_steps))
        tick()
    best = best_of(finals)
    return solve(problem, best.form, best.u, None, effort.polish_steps)


class FitResult(NamedTuple):
    """A fit: its parameters, and the coordinates and form they came from (warm starts)."""

    params: DeviceParams
    space: Space
    form: Form
    u: np.ndarray


@contextmanager
def fit_progress(desc: str, quiet: bool) -> Iterator[Callable[[], None]]:
    """A counter on stderr (a terminal, not --json) ticked after each candidate fit."""
    if not progress_enabled(quiet):
        yield lambda: None
        return
    from tqdm import tqdm  # only on a terminal: tqdm is not needed otherwise

    with tqdm(desc=desc, unit=" fits", leave=False, file=sys.stderr) as bar:
        yield bar.update
