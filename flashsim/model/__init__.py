"""OPT in numpy: dense and sparse FFN forward, checkpoint loading, low-rank predictors."""

from .checkpoint import Checkpoint, OPTSpec, file_sha256, load_checkpoint
from .opt import DenseFFN, KVCache, OPTModel
from .predictor import LayerPredictor, PredictorSet
from .sampling import greedy, next_token, sample_top_p
from .sparse import SparseFFN
from .weights import DRAMWeightSource, FFNWeightSource

__all__ = ["Checkpoint", "OPTSpec", "file_sha256", "load_checkpoint", "DenseFFN", "KVCache",
           "OPTModel", "LayerPredictor", "PredictorSet", "greedy", "next_token", "sample_top_p",
           "SparseFFN", "DRAMWeightSource", "FFNWeightSource"]
