"""Compute time per token: the decode's parts, each as a function of what drives it.

seconds(token) = fixed_s_per_token                        embeddings, final LN, LM head, sampling
  + Σ_layers [ fixed_s_per_layer                           layer norms, projections, predictor
               + s_per_context_token · context             attention over the tokens so far
               + ffn_fixed_s_per_layer · (n > 0)           the sparse FFN's call, when it runs
               + s_per_neuron · n ]                        rows gathered and multiplied
with n the neurons the layer's FFN multiplies and context the keys the token attends to
(its position + 1). `ComputeModel(fixed, per_neuron)` is the plain linear model (the other
terms 0), as sweeps with fixed rates use it.

Calibrations (`calibrate_compute(geometry)`):
- "opt-decode" (the bundled opt-mini has the geometry): the real sparse decode of
  `flashsim.model`, timed per part (`compute_decode.py`); what the flash runtime reports
  as compute_ms.
- "matvec" (other geometries, e.g. OPT-6.7B): the same parts timed as numpy operations at
  the exact shapes (`compute_matvec.py`), with the shapes a geometry does not give assumed.
Both time with BLAS pinned to one thread, as the runtime decodes.
"""

from __future__ import annotations

import functools

from ..geometry import ModelGeometry
from ..model.opt import OPTModel
from ..model.sparse import one_blas_thread
from .compute_decode import calibrate_decode
from .compute_matvec import calibrate_matvec
from .compute_model import ComputeModel, PartCost

__all__ = ["ComputeModel", "PartCost", "calibrate_compute"]


@functools.cache
def calibrate_compute(geometry: ModelGeometry, repeats: int = 30) -> ComputeModel:
    """The real sparse decode when the bundled model matches `geometry`, else matvecs."""
    model = _bundled_model_for(geometry)
    with one_blas_thread():
        if model is not None:
            return calibrate_decode()
        return calibrate_matvec(geometry, repeats=repeats)


def _bundled_model_for(geometry: ModelGeometry):
    try:
        model = OPTModel.load()
    except Exception:  # no bundled model (yet), or it cannot be read: use matvecs
        return None
    return model if model.geometry.mismatch(geometry) is None else None
