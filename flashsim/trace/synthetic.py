"""SYNTHETIC activation traces at any geometry (e.g. OPT-6.7B), fitted to a real trace.

For scale studies only (the paper_table2 study): flashsim has no OPT-6.7B trace, so this
generates a clearly marked stand-in (`meta["synthetic"] = True`) whose structure comes from a
real trace and whose rates come from the paper.

Model (Gaussian copula, vectorised over neurons and layers). Each neuron i has a latent
  z_i(t) = sqrt(w*gamma) g_c(i)(t) + sqrt(w*(1-gamma)) s_i(t) + sqrt(1-w) e_i(t)  ~ N(0, 1),
with g (a co-activation group factor shared by the neurons of group c) and s (the neuron's own
slow factor) stationary AR(1) processes with coefficient phi, and e white noise. The predictor
picks i when z_i(t) > beta_i; the neuron is truly active when z_i(t) + tau*n_i(t) > alpha_i
(n: noise the predictor cannot see, a share v of it slow like s, so true activity keeps the
real trace's persistence). Thresholds give each neuron its firing rate r_i and
predicted rate p_i, drawn as (r, p) pairs from the real trace's per-neuron rates (hot and dead
neurons included) scaled to the target per-layer rates. tau is solved per layer for the target
recall; (phi, w) for the target windowing (or to the real trace's reuse when no window target
is given); gamma so the closest-friend rate matches the real trace's; v so the active set's
persistence P(active at t+1 | active at t) matches the real trace's (at its own rates).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.signal import lfilter
from scipy.special import ndtr, ndtri

from ..data import TRAINING_TRACE
from ..errors import InputError
from ..geometry import ModelGeometry, NeuronSets
from ..progress import progress
from .format import ActivationTrace
from .stats import closest_friends, measured_tokens, trace_stats

OPT_6_7B_SYNTHETIC = ModelGeometry("opt-6.7b-synthetic", n_layers=32, d_model=4096,
                                   d_ffn=16384, dtype_bytes=2)
MAX_RATE = 0.99
GROUP_SIZE = 32  # neurons per co-activation group


@dataclass(frozen=True)
class SyntheticRates:
    """Target rates of a synthetic trace (fractions of d_ffn; per layer for the active rate)."""

    active_rate: tuple[float, ...]
    predicted_to_active: float | None = 3.0  # |predicted| / |active|; None: no predicted sets
    recall: float = 0.95  # share of active neurons the predictor picks
    window_k: int = 5
    window_incremental_fraction: float | None = 0.024  # over the predicted set (or active)
    window_resident_fraction: float | None = 0.24
    source: str = ""

    def check(self, n_layers: int) -> None:
        """InputError when a target is out of range or has the wrong number of layers."""
        r = np.asarray(self.active_rate, dtype=float)
        if len(r) != n_layers:
            raise InputError(f"{len(r)} active rates for {n_layers} layers", key="active_rate",
                             expected=f"one rate per layer ({n_layers})")
        if np.any(~np.isfinite(r)) or np.any(r <= 0) or np.any(r > 0.5):
            raise InputError("active rates out of range", key="active_rate",
                             expected="fractions in (0, 0.5]")
        if self.predicted_to_active is not None and not (
                1 <= self.predicted_to_active and np.all(self.predicted_to_active * r < MAX_RATE)):
            raise InputError(f"predicted_to_active {self.predicted_to_active}",
                             key="predicted_to_active",
                             expected="a ratio >= 1 with predicted rates below 0.99")
        if not 0 < self.recall <= 1:
            raise InputError(f"recall {self.recall}", key="recall", expected="a value in (0, 1]")
        if self.window_k < 1:
            raise InputError(f"window_k {self.window_k}", key="window_k", expected=">= 1")
        for key in ("window_incremental_fraction", "window_resident_fraction"):
            v = getattr(self, key)
            if v is not None and not 0 < v < 1:
                raise InputError(f"{key} {v}", key=key, expected="a fraction in (0, 1)")
        if (self.window_incremental_fraction is None) != (self.window_resident_fraction is None):
            raise InputError("give both window targets or neither",
                             key="window_resident_fraction",
                             expected="window_incremental_fraction and window_resident_fraction")


def paper_opt_6_7b_rates(n_layers: int = 32) -> SyntheticRates:
    """The paper's OPT-6.7B rates: 1.56% active in layer 1, 2.66% in 16, 5.36% in 32, 3.3% mean.

    Piecewise linear through the three anchors, plus a half-sine bump between anchors scaled
    so the mean is 3.3% (straight lines give 3.10%; the paper publishes no other layer).
    Predictor: ~3x the active set, ~5% missed. Windowing k=5: 2.4% of the FFN loaded per
    token, 24% resident, over the predicted set.
    """
    if n_layers < 3:
        raise InputError(f"{n_layers} layers", key="n_layers", expected="at least 3 layers")
    x = np.arange(n_layers, dtype=float)
    knots = np.array([0.0, 15 / 31 * (n_layers - 1), n_layers - 1.0])
    values = np.array([0.0156, 0.0266, 0.0536])
    base = np.interp(x, knots, values)
    seg = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, 1)
    bump = np.sin(np.pi * (x - knots[seg]) / (knots[seg + 1] - knots[seg]))
    bump = np.clip(bump, 0, None)
    scale = (0.033 * n_layers - base.sum()) / bump.sum()
    rates = base + scale * bump
    return SyntheticRates(tuple(float(v) for v in rates), source="LLM in a flash (2312.11514), "
                          "OPT-6.7B: active 1.56/2.66/5.36% (layers 1/16/32), mean 3.3%; "
                          "predicted ~3x active, ~5% missed; window k=5: 2.4% loaded, 24% resident")


def default_fit_trace_path() -> Path:
    """The bundled real trace used for fitting by default (opt-mini, training text)."""
    return TRAINING_TRACE


def parse_geometry(text: str) -> ModelGeometry:
    """'opt-6.7b' or 'N_LAYERS,D_MODEL,D_FFN,DTYPE_BYTES' -> a synthetic ModelGeometry."""
    if text.lower() in ("opt-6.7b", "opt-6.7b-synthetic"):
        return OPT_6_7B_SYNTHETIC
    parts = text.split(",")
    try:
        n_layers, d_model, d_ffn, dtype_bytes = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"geometry {text!r}", key="--geometry",
                         expected="'opt-6.7b' or N_LAYERS,D_MODEL,D_FFN,DTYPE_BYTES") from None
    if min(n_layers, d_model, d_ffn, dtype_bytes) < 1:
        raise InputError(f"geometry {text!r}", key="--geometry", expected="positive integers")
    return ModelGeometry(f"synthetic-{n_layers}x{d_ffn}", n_layers, d_model, d_ffn, dtype_bytes)


# ---- fitting the real trace -------------------------------------------------------------


@dataclass
class RealStructure:
    """What is taken from the real trace: per-neuron rate pairs and the reuse to match."""

    rel_active: np.ndarray  # per neuron (all layers pooled): rate / its layer's mean rate
    rel_predicted: np.ndarray | None  # the same neurons' predicted rate / layer mean
    active_rate: np.ndarray  # [n_layers, d_ffn] the real per-neuron rates (for like-for-like fits)
    predicted_rate: np.ndarray | None
    set_name: str  # the set whose reuse is matched: 'predicted' when the trace has one
    hit_share: list[float]  # reuse of that set for k = 1 .. 8
    friend_rate_mean: float  # closest-friend rate (active set, neurons active >= 5 times)
    n_tokens: int  # generated tokens measured
    friend_tokens: int  # generated tokens the closest-friend rate was measured on
    summary: dict[str, Any]


def fit_real_structure(real: ActivationTrace) -> RealStructure:
    """Per-neuron rates, reuse and co-activation of a real trace (its generated tokens)."""
    if real.is_synthetic:
        raise InputError("cannot fit a synthetic trace to another synthetic trace",
                         key="fitted_to", expected="a trace captured from a real model")
    start, stop = measured_tokens(real)
    if stop - start < 16:
        raise InputError(f"only {stop - start} generated tokens to fit", key="fitted_to",
                         expected="a real trace with at least 16 generated tokens")
    d = real.geometry.d_ffn

    def rates(sets: list[NeuronSets]) -> np.ndarray:
        out = np.zeros((len(sets), d))
        for l, s in enumerate(sets):
            lo, hi = int(s.ptr[start]), int(s.ptr[stop])
            out[l] = np.bincount(s.ids[lo:hi], minlength=d) / (stop - start)
        return out

    ra = rates(real.active)
    rp = rates(real.predicted) if real.predicted is not None else None
    keep = ra.mean(axis=1) > 0
    if not keep.any():
        raise InputError("the real trace has no active neurons", key="fitted_to")
    rel_a = (ra[keep] / ra[keep].mean(axis=1, keepdims=True)).ravel()
    rel_p = None
    if rp is not None:
        rel_p = (rp[keep] / np.maximum(rp[keep].mean(axis=1, keepdims=True), 1e-12)).ravel()
    set_name = "predicted" if rp is not None else "active"
    st = trace_stats(real, set_name, coactivation=False)
    friend_stop = min(stop, start + FRIEND_TOKENS)
    friends = [_friend_rate(closest_friends(s, start, friend_stop)) for s in real.active
               if s.ptr[friend_stop] > s.ptr[start]]
    summary = {
        "trace": real.geometry.name, "trace_meta": {k: real.meta.get(k) for k in
                                                    ("source", "model", "prompt_source", "seed")
                                                    if k in real.meta},
        "n_layers": real.n_layers, "d_ffn": d, "n_tokens_measured": stop - start,
        "active_fraction_per_layer": ra.mean(axis=1).tolist(),
        "dead_share": float((ra == 0).mean()),
        "top1pct_share_of_activations": float(np.mean(
            [np.sort(r)[::-1][:max(1, d // 100)].sum() / max(r.sum(), 1e-12) for r in ra])),
        "reuse_set": set_name, "hit_share": [float(v) for v in st["window_hit_share"]],
        "active_persistence": float(st["window_by_set"]["active"]["hit_share"][0]),
        "friend_rate_mean": float(np.mean(friends)), "friend_tokens": friend_stop - start,
    }
    if rp is not None:
        summary["predicted_to_active"] = float(rp.sum() / max(ra.sum(), 1e-12))
        summary["recall"] = st["predictor"]["mean"]["recall"]
    return RealStructure(rel_a, rel_p, ra, rp, set_name,
                         [float(v) for v in st["window_hit_share"]],
                         float(np.mean(friends)), stop - start, friend_stop - start, summary)


FRIEND_TOKENS = 384  # co-activation is compared over this many tokens (rates depend on it)
FIT_TOKENS = 400  # longest simulation when fitting at the real trace's geometry
FRIEND_MIN_COUNT = 5  # neurons active fewer times have closest-friend rates near 1 by chance


def _friend_rate(friends: Any) -> float:
    """Mean closest-friend rate of the neurons active at least FRIEND_MIN_COUNT times."""
    ok = friends.counts >= FRIEND_MIN_COUNT
    return float(friends.friend_rate[ok].mean()) if ok.any() else float("nan")


# ---- rates and thresholds --------------------------------------------------------------


def _scale_to_mean(rel: np.ndarray, mean: float) -> np.ndarray:
    """rel * c clipped to MAX_RATE, with c chosen so the clipped rates average `mean`."""
    lo, hi = 0.0, mean / max(rel.mean(), 1e-12) * 64
    for _ in range(60):
        c = 0.5 * (lo + hi)
        if np.minimum(rel * c, MAX_RATE).mean() < mean:
            lo = c
        else:
            hi = c
    return np.minimum(rel * 0.5 * (lo + hi), MAX_RATE)


def _neuron_rates(structure: RealStructure, rates: SyntheticRates, d_ffn: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Per layer and neuron (r, p): pairs drawn from the real trace, scaled to the targets."""
    n_layers = len(rates.active_rate)
    pick = rng.integers(0, len(structure.rel_active), size=(n_layers, d_ffn))
    r = np.stack([_scale_to_mean(structure.rel_active[pick[l]], rates.active_rate[l])
                  for l in range(n_layers)])
    if rates.predicted_to_active is None:
        return r, None
    if structure.rel_predicted is not None:
        rel_p = structure.rel_predicted[pick]
    else:  # no predictor in the real trace: a neuron's predicted rate grows with its own rate
        rel_p = 1 - (1 - np.minimum(r, MAX_RATE)) ** 3
    p = np.stack([_scale_to_mean(rel_p[l], rates.predicted_to_active * rates.active_rate[l])
                  for l in range(n_layers)])
    return r, p


_NOISE_NODES = np.linspace(-7, 7, 161)
_NOISE_WEIGHTS = np.exp(-0.5 * _NOISE_NODES ** 2)
_NOISE_WEIGHTS /= _NOISE_WEIGHTS.sum()


def _recall(r: np.ndarray, p: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Per layer P(predicted | active) for predictor noise tau ([L, m] rates, [L] tau)."""
    q = ndtri(1 - r)  # active iff (z + tau n) / sqrt(1 + tau^2) > q
    beta = ndtri(1 - p)
    alpha = np.sqrt(1 + tau ** 2)[:, None] * q
    bound = np.maximum(beta[..., None], alpha[..., None] - tau[:, None, None] * _NOISE_NODES)
    both = ((1 - ndtr(bound)) * _NOISE_WEIGHTS).sum(axis=-1)
    return both.sum(axis=1) / np.maximum(r.sum(axis=1), 1e-12)


def _solve_tau(r: np.ndarray, p: np.ndarray, recall: float, m: int = 512) -> np.ndarray:
    """Per-layer predictor noise giving the target recall (0 when even tau=0 misses more)."""
    order = np.argsort(r, axis=1)
    idx = order[:, np.linspace(0, r.shape[1] - 1, min(m, r.shape[1])).astype(int)]
    rs, ps = np.take_along_axis(r, idx, 1), np.take_along_axis(p, idx, 1)
    lo, hi = np.zeros(len(r)), np.full(len(r), 20.0)
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        ok = _recall(rs, ps, mid) >= recall
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return lo


# ---- the latent process ----------------------------------------------------------------


@dataclass(frozen=True)
class LatentParams:
    """AR(1) coefficient phi, slow share w, group share gamma of the slow part."""

    phi: float
    w: float
    gamma: float


def _groups(n_layers: int, d_ffn: int, rng: np.random.Generator) -> np.ndarray:
    """Random assignment of each layer's neurons to groups of GROUP_SIZE."""
    n_groups = max(1, d_ffn // GROUP_SIZE)
    base = np.arange(d_ffn) % n_groups
    return np.stack([rng.permutation(base) for _ in range(n_layers)])


def _ar1(rng: np.random.Generator, shape: tuple[int, int], phi: float) -> np.ndarray:
    """Stationary N(0, 1) AR(1) series along axis 0 (float32), filtered in C by lfilter."""
    x = rng.standard_normal(shape, dtype=np.float32)
    if shape[0] > 1 and phi > 0:
        b = np.array([np.sqrt(1 - phi ** 2)], dtype=np.float32)
        a = np.array([1.0, -phi], dtype=np.float32)
        x[1:], _ = lfilter(b, a, x[1:], axis=0, zi=(np.float32(phi) * x[0])[None, :])
    return x


def _latent_masks(beta: np.ndarray, params: LatentParams, n_tokens: int, seed: int,
                  group_of: np.ndarray | None = None, alpha: np.ndarray | None = None,
                  tau: np.ndarray | None = None, quiet: bool = True,
                  noise_slow: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the latent process; [L, T, m] masks of z > beta (and of z + tau n > alpha)."""
    rng = np.random.default_rng(seed)
    n_layers, m = beta.shape
    phi, w, gamma = params.phi, params.w, params.gamma
    f32 = np.float32
    a_g, a_s, a_e = f32(np.sqrt(w * gamma)), f32(np.sqrt(w * (1 - gamma))), f32(np.sqrt(1 - w))
    n_groups = int(group_of.max()) + 1 if group_of is not None and gamma > 0 else 0
    first = np.zeros((n_layers, n_tokens, m), dtype=bool)
    second = np.zeros((n_layers, n_tokens, m), dtype=bool) if alpha is not None else None
    for l in progress(range(n_layers), total=n_layers, desc="synthetic layers", quiet=quiet):
        z = _ar1(rng, (n_tokens, m), phi)
        z *= a_s
        z += a_e * rng.standard_normal((n_tokens, m), dtype=f32)
        if n_groups:
            z += a_g * _ar1(rng, (n_tokens, n_groups), phi)[:, group_of[l]]
        np.greater(z, beta[l].astype(f32), out=first[l])
        if second is not None:
            noise = rng.standard_normal((n_tokens, m), dtype=f32)
            if noise_slow > 0:
                noise *= f32(np.sqrt(1 - noise_slow))
                noise += f32(np.sqrt(noise_slow)) * _ar1(rng, (n_tokens, m), phi)
            z += f32(tau[l]) * noise
            np.greater(z, alpha[l].astype(f32), out=second[l])
    return first, second


def _mask_window(mask: np.ndarray, ks: Sequence[int], start: int) -> dict[int, tuple[float, float, float]]:
    """Per k: (hit share, incremental fraction, resident fraction) from [L, T, m] masks.

    Needs start >= max(ks) (every measured token has a full window behind it).
    """
    n_layers, n_tokens, m = mask.shape
    c = np.zeros((n_layers, n_tokens + 1, m), dtype=np.int16)
    np.cumsum(mask, axis=1, out=c[:, 1:])
    now = mask[:, start:]
    entries = int(now.sum())
    cells = (n_tokens - start) * n_layers * m
    out = {}
    for k in ks:
        before = c[:, start:n_tokens] != c[:, start - k:n_tokens - k]  # used in t-k .. t-1
        hits = int(np.count_nonzero(now & before))
        resident = np.count_nonzero(c[:, start + 1:] != c[:, start + 1 - k:n_tokens + 1 - k])
        out[k] = (hits / max(entries, 1), (entries - hits) / cells, resident / cells)
    return out


def _fit_latent(beta: np.ndarray, objective, seed: int, n_tokens: int, start: int,
                ks: Sequence[int]) -> tuple[LatentParams, float]:
    """(phi, w) minimising objective(window stats by k) on common random numbers."""
    def unpack(x: np.ndarray) -> LatentParams:
        sig = 1 / (1 + np.exp(-np.clip(x, -30, 30)))
        return LatentParams(float(0.995 * sig[0]), float(0.999 * sig[1]), 0.0)

    def loss(x: np.ndarray) -> float:
        mask, _ = _latent_masks(beta, unpack(x), n_tokens, seed)
        return objective(_mask_window(mask, ks, start))

    grid = [np.array([a, b]) for a in (-1.0, 1.0, 3.0) for b in (-1.0, 1.0, 3.0)]
    x0 = min(grid, key=loss)
    res = minimize(loss, x0, method="Nelder-Mead",
                   options={"xatol": 0.02, "fatol": 1e-6, "maxfev": 45,
                            "initial_simplex": [x0, x0 + [0.5, 0], x0 + [0, 0.5]]})
    return unpack(res.x), float(res.fun)


def _calibration_sample(p: np.ndarray, m: int) -> np.ndarray:
    """m neurons per layer spread evenly over each layer's sorted rates (stratified)."""
    order = np.sort(p, axis=1)
    return order[:, np.linspace(0, p.shape[1] - 1, min(m, p.shape[1])).astype(int)]


def _fit_gamma(structure: RealStructure, params: LatentParams, seed: int) -> float:
    """Group share giving the real trace's mean closest-friend rate, at its own geometry."""
    r = structure.active_rate
    live = r.mean(axis=1) > 0
    beta = ndtri(1 - np.minimum(r[live], MAX_RATE))
    group_of = _groups(beta.shape[0], beta.shape[1], np.random.default_rng(seed))

    def friend_rate(gamma: float) -> float:
        mask, _ = _latent_masks(beta, LatentParams(params.phi, params.w, gamma),
                                structure.friend_tokens, seed, group_of)
        return float(np.nanmean([_friend_rate(closest_friends(NeuronSets.from_mask(m)))
                                 for m in mask if m.any()]))

    lo, hi = 0.0, 1.0
    if friend_rate(hi) <= structure.friend_rate_mean:
        return hi
    if friend_rate(lo) >= structure.friend_rate_mean:
        return lo
    for _ in range(7):
        mid = 0.5 * (lo + hi)
        if friend_rate(mid) < structure.friend_rate_mean:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _fit_noise_slow(structure: RealStructure, params: LatentParams, seed: int) -> float:
    """Slow share v of the predictor noise giving the real trace's active-set persistence,
    simulated at the real trace's own rates, recall and fitted (phi, w)."""
    if structure.predicted_rate is None:
        return 0.0
    live = structure.active_rate.mean(axis=1) > 0
    r = np.minimum(structure.active_rate[live], MAX_RATE)
    p = np.minimum(structure.predicted_rate[live], MAX_RATE)
    tau = _solve_tau(r, p, float(structure.summary["recall"]))
    beta = ndtri(1 - p)
    alpha = np.sqrt(1 + tau ** 2)[:, None] * ndtri(1 - r)
    target = float(structure.summary["active_persistence"])
    n_tokens = min(structure.n_tokens, FIT_TOKENS) + 1

    def persistence(v: float) -> float:
        _, act = _latent_masks(beta, params, n_tokens, seed, None, alpha, tau, noise_slow=v)
        return _mask_window(act, [1], 1)[1][0]

    if np.all(tau == 0) or persistence(1.0) <= target:
        return 1.0 if np.any(tau > 0) else 0.0
    if persistence(0.0) >= target:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(8):
        mid = 0.5 * (lo + hi)
        if persistence(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---- the generator ---------------------------------------------------------------------


def _check_request(geometry: ModelGeometry, n_tokens: int, n_prompt_tokens: int) -> None:
    """InputError for a token count that makes no trace, or one this machine's memory cannot
    hold: the latent process keeps two boolean masks of layers × tokens × neurons and
    float32 noise of tokens × neurons a few times over."""
    if n_tokens < 2 or not 0 <= n_prompt_tokens < n_tokens:
        raise InputError(f"{n_tokens} tokens with {n_prompt_tokens} prompt tokens",
                         key="n_tokens", expected="at least 2 tokens, some after the prompt")
    need = geometry.n_layers * n_tokens * geometry.d_ffn * 2 + 16 * n_tokens * geometry.d_ffn
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # no sysconf: nothing to check against
        return
    if need > have:
        raise InputError(f"{n_tokens} tokens of {geometry.n_layers} × {geometry.d_ffn} neurons "
                         f"need ~{need / 2**30:.0f} GiB, more than this machine's "
                         f"{have / 2**30:.0f} GiB", key="n_tokens",
                         expected="fewer tokens or a smaller geometry")


def synthetic_trace(geometry: ModelGeometry, n_tokens: int, *, fitted_to: ActivationTrace,
                    rates: SyntheticRates, seed: int = 0, n_prompt_tokens: int = 0,
                    calibration_neurons: int = 256, quiet: bool = True) -> ActivationTrace:
    """A SYNTHETIC trace of `geometry`: real-trace structure, target rates, marked synthetic.

    Deterministic given the seed. meta holds the targets, the fitted parameters and the
    achieved statistics (measured on the result with trace_stats). quiet=False shows a bar.
    """
    rates.check(geometry.n_layers)
    _check_request(geometry, n_tokens, n_prompt_tokens)
    structure = fit_real_structure(fitted_to)
    seeds = np.random.SeedSequence(seed).generate_state(6)
    rng = np.random.default_rng(seeds[0])
    L, d = geometry.n_layers, geometry.d_ffn
    r, p = _neuron_rates(structure, rates, d, rng)
    has_pred = p is not None
    latent_rate = p if has_pred else r  # the set the latent threshold beta defines
    k = rates.window_k
    cal_tokens, cal_start = 200 + k, k

    # (phi, w) fitted to the real trace's reuse, at its own rates (like for like)
    real_rate = structure.predicted_rate if structure.set_name == "predicted" else \
        structure.active_rate
    real_beta = ndtri(1 - np.minimum(real_rate[real_rate.mean(axis=1) > 0], MAX_RATE))
    h = structure.hit_share
    real_params, real_loss = _fit_latent(
        real_beta, lambda ws: (ws[1][0] - h[0]) ** 2 + (ws[k][0] - h[k - 1]) ** 2,
        int(seeds[1]), min(structure.n_tokens, FIT_TOKENS) + k, k, sorted({1, k}))

    targets: dict[str, Any] = {"active_fraction_per_layer": list(rates.active_rate),
                               "mean_active_fraction": float(np.mean(rates.active_rate))}
    if has_pred:
        targets.update({"predicted_to_active": rates.predicted_to_active,
                        "recall": rates.recall,
                        "mean_predicted_fraction": float(np.mean(rates.active_rate))
                        * rates.predicted_to_active})
    if rates.window_incremental_fraction is not None:
        inc_t, res_t = rates.window_incremental_fraction, rates.window_resident_fraction
        targets.update({"window_k": k, "window_incremental_fraction": inc_t,
                        "window_resident_fraction": res_t})
        cal_beta = ndtri(1 - _calibration_sample(latent_rate, calibration_neurons))
        params, loss = _fit_latent(
            cal_beta,
            lambda ws: 4 * (ws[k][1] / inc_t - 1) ** 2 + (ws[k][2] / res_t - 1) ** 2,
            int(seeds[2]), cal_tokens, cal_start, [k])
        how = "window targets"
    else:
        params, loss, how = real_params, real_loss, "real trace reuse"
    gamma = _fit_gamma(structure, params, int(seeds[3]))
    noise_slow = _fit_noise_slow(structure, real_params, int(seeds[3])) if has_pred else 0.0
    params = LatentParams(params.phi, params.w, gamma)

    tau = _solve_tau(r, p, rates.recall) if has_pred else np.zeros(L)
    beta = ndtri(1 - latent_rate)
    alpha = np.sqrt(1 + tau ** 2)[:, None] * ndtri(1 - r) if has_pred else None
    group_of = _groups(L, d, np.random.default_rng(seeds[4]))
    first, second = _latent_masks(beta, params, n_tokens, int(seeds[5]), group_of,
                                  alpha, tau if has_pred else None, quiet=quiet,
                                  noise_slow=noise_slow)
    active_mask = second if has_pred else first
    active = [NeuronSets.from_mask(active_mask[l]) for l in range(L)]
    predicted = [NeuronSets.from_mask(first[l]) for l in range(L)] if has_pred else None
    del first, second, active_mask

    meta: dict[str, Any] = {
        "synthetic": True,
        "generator": "flashsim.trace.synthetic.synthetic_trace (Gaussian-copula AR(1) model)",
        "seed": int(seed), "rates_source": rates.source, "targets": targets,
        "fit": {"real": structure.summary,
                "latent_fitted_to_real": {**asdict(real_params), "loss": real_loss},
                "latent": {**asdict(params), "calibrated_to": how, "loss": loss},
                "predictor_noise_tau": tau.tolist(), "predictor_noise_slow_share": noise_slow,
                "group_size": GROUP_SIZE},
    }
    trace = ActivationTrace(geometry, np.zeros(n_tokens, dtype=np.int32), n_prompt_tokens,
                            active, predicted, meta)
    trace.meta["achieved"] = achieved_stats(trace, k)
    return trace


def opt_6_7b_synthetic_trace(fit_path: str | Path | None = None, n_tokens: int = 384,
                             n_prompt_tokens: int = 128, seed: int = 0,
                             quiet: bool = True) -> ActivationTrace:
    """The paper_table2 stand-in: OPT-6.7B geometry, paper rates, fitted to a real trace
    (default: the bundled opt-mini training trace). SYNTHETIC."""
    fit = ActivationTrace.load(fit_path if fit_path is not None else default_fit_trace_path())
    return synthetic_trace(OPT_6_7B_SYNTHETIC, n_tokens, fitted_to=fit,
                           rates=paper_opt_6_7b_rates(OPT_6_7B_SYNTHETIC.n_layers), seed=seed,
                           n_prompt_tokens=n_prompt_tokens, quiet=quiet)


def ensure_opt_6_7b_trace(path: str | Path) -> Path:
    """`opt_6_7b_synthetic_trace()` saved at `path` unless a file is there already: the one
    stand-in the Table 2 study, the DRAM-budget study and the benchmarks share."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        opt_6_7b_synthetic_trace().save(path)
    return path


def achieved_stats(trace: ActivationTrace, window_k: int = 5) -> dict[str, Any]:
    """The statistics a synthetic trace is fitted to, measured with trace_stats."""
    ks = sorted({1, window_k})
    st = trace_stats(trace, coactivation=False, ks=ks)
    j = ks.index(window_k)
    active = 1 - np.asarray(st["sparsity"])
    out: dict[str, Any] = {"active_fraction_per_layer": active.tolist(),
                           "mean_active_fraction": float(active.mean())}
    if st["predictor"] is not None:
        pred = st["predictor"]["mean"]
        predicted = 1 - np.asarray(st["predicted_sparsity"])
        out.update({"predicted_to_active": float(predicted.sum() / active.sum()),
                    "recall": float(np.mean(st["predictor"]["recall"])),
                    "false_positive_rate": pred["false_positive_rate"],
                    "mean_predicted_fraction": float(predicted.mean())})
    start, stop = measured_tokens(trace)
    d = trace.geometry.d_ffn
    counts = [np.bincount(s.ids[s.ptr[start]:s.ptr[stop]], minlength=d) for s in trace.active]
    out["dead_share"] = float(np.mean([(c == 0).mean() for c in counts]))
    out["top1pct_share_of_activations"] = float(np.mean(
        [np.sort(c)[::-1][:max(1, d // 100)].sum() / max(c.sum(), 1) for c in counts]))
    out.update({"window_k": window_k,
                "window_incremental_fraction": float(st["window_incremental_fraction"][j]),
                "window_resident_fraction": float(st["window_resident_fraction"][j]),
                "window_hit_share": float(st["window_hit_share"][j]),
                "active_persistence": float(st["window_by_set"]["active"]["hit_share"][0])})
    return out


def is_synthetic(trace: ActivationTrace) -> bool:
    """True for traces made by this module."""
    return trace.is_synthetic


__all__: Sequence[str] = ("OPT_6_7B_SYNTHETIC", "SyntheticRates", "paper_opt_6_7b_rates",
                          "synthetic_trace", "opt_6_7b_synthetic_trace", "fit_real_structure", "achieved_stats",
                          "parse_geometry", "default_fit_trace_path")
