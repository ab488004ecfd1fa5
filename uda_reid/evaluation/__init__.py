"""ReID evaluation: rank metrics (CMC, mAP, mINP), ROC, distances, query expansion, DSR,
re-ranking (``uda_reid.evaluation.rerank``) and rank-list visualisation."""
from uda_reid.evaluation.distances import compute_distance
from uda_reid.evaluation.dsr import dsr_distance
from uda_reid.evaluation.evaluator import (QueryExpansionOptions, RerankOptions, RocOptions,
                                           evaluate_distances, evaluate_features,
                                           evaluate_from_config, evaluate_from_section,
                                           evaluate_splits,
                                           retrieval_distance)
from uda_reid.evaluation.query_expansion import database_augmentation, query_expansion
from uda_reid.evaluation.rank import evaluate_rank
from uda_reid.evaluation.rerank import re_ranking, re_ranking_features
from uda_reid.evaluation.roc import evaluate_roc

__all__ = ["QueryExpansionOptions", "RerankOptions", "RocOptions", "compute_distance",
           "database_augmentation", "dsr_distance", "evaluate_distances", "evaluate_features",
           "evaluate_from_config", "evaluate_from_section", "evaluate_rank", "evaluate_splits",
           "evaluate_roc", "query_expansion", "re_ranking", "re_ranking_features",
           "retrieval_distance"]
