"""Does each term of the layered model earn its place? Refit a profile without it and compare
the errors on points no fit saw: at the profile's holdout points (and, when asked, k-fold
cross-validated), of the layered model alone and with the measured residual (residual.py).

A variant leaves out one term beyond the core four (it stays at 0, absent), or one host mode
(links in passes; a shared host CPU), or the transfer spread. The full model is the first
row; a term whose removal does not raise any held-out error on any device is a candidate to
drop.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .crossval import cross_validate, holdout_record
from .fit import BATCH_WEIGHT, fit_model, point_errors, summarize
from .fitspace import HOST_MODES, N_CORE, NAMES
from .profile import DeviceProfile


class Variant(NamedTuple):
    """A model variant: the terms it leaves out, the host modes it may use, the spread."""

    name: str
    exclude: frozenset[str] = frozenset()
    host_modes: tuple[tuple[int, bool], ...] = HOST_MODES
    transfer_spread: bool = True


def variants() -> list[Variant]:
    """The full model, then each term beyond the core four left out, each host mode beyond
    the simplest left out, and the transfer spread left out."""
    out = [Variant("full model")]
    out += [Variant(f"without {name}", frozenset({name})) for name in NAMES[N_CORE:]
            if name != "link_pass_us"]  # the pass time goes with the passes mode below
    out.append(Variant("without link passes",
                       host_modes=tuple(m for m in HOST_MODES if not m[1])))
    out.append(Variant("without a shared host CPU", host_modes=HOST_MODES[:1]))
    out.append(Variant("without transfer spread", transfer_spread=False))
    return out


def ablation_row(profile: DeviceProfile, variant: Variant, *, cv_folds: int = 0,
                 batch_weight: float = BATCH_WEIGHT) -> dict[str, Any]:
    """One variant refitted on `profile`'s points: its fit, holdout and (with `cv_folds` ≥ 2)
    cross-validated errors (median and worst |error| %), of the layered model and with the
    residual."""
    result = fit_model(profile.points, batch_weight=batch_weight, host_modes=variant.host_modes,
                       exclude=variant.exclude)
    if not variant.transfer_spread:
        result = result._replace(params=result.params.model_copy(
            update={"link_transfer_spread": 0.0}))
    cv = (cross_validate(profile.points, result, cv_folds, batch_weight=batch_weight)
          if cv_folds else {})
    fit = summarize(point_errors(result.params, profile.points))
    hold = holdout_record(result.params, profile.points, profile.holdout_points)
    return {"profile": profile.name, "variant": variant.name,
            "terms_fitted": len(result.form.free) + int(variant.transfer_spread),
            "host_cpus": result.form.host_cpus, "link_passes": result.form.passes,
            "fit_median_pct": fit.median_abs_error_pct, "fit_worst_pct": fit.worst_abs_error_pct,
            "cv_median_pct": cv.get("uncorrected_cv_median_abs_error_pct"),
            "cv_worst_pct": cv.get("uncorrected_cv_worst_abs_error_pct"),
            "cv_corrected_median_pct": cv.get("cv_median_abs_error_pct"),
            "cv_corrected_worst_pct": cv.get("cv_worst_abs_error_pct"),
            "holdout_median_pct": hold.get("uncorrected_holdout_median_abs_error_pct"),
            "holdout_worst_pct": hold.get("uncorrected_holdout_worst_abs_error_pct"),
            "holdout_corrected_median_pct": hold.get("holdout_median_abs_error_pct"),
            "holdout_corrected_worst_pct": hold.get("holdout_worst_abs_error_pct")}
