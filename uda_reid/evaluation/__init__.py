"""ReID evaluation: rank metrics, ROC, distances, query expansion, DSR, re-ranking."""
from uda_reid.evaluation.distances import compute_distance
from uda_reid.evaluation.dsr import dsr_distance
from uda_reid.evaluation.query_expansion import query_expansion
from uda_reid.evaluation.rank import evaluate_rank
from uda_reid.evaluation.roc import evaluate_roc

__all__ = ["compute_distance", "dsr_distance", "evaluate_rank", "evaluate_roc",
           "query_expansion"]
