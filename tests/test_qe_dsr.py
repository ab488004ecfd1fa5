"""Distances, query expansion, DSR and the evaluator on hand-made cases and slow loops."""
import sys
import types

import numpy as np
import pytest
import torch

from uda_reid.config import load_config
from uda_reid.evaluation import (compute_distance, database_augmentation, dsr_distance,
                                 evaluate_features, evaluate_from_config, evaluate_rank,
                                 evaluate_roc, query_expansion)
from uda_reid.evaluation import protocol


def test_distances_cosine_and_euclidean_by_hand_and_in_chunks(monkeypatch):
    q, g = torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(compute_distance(q, g, "euclidean"), [[0.0, np.sqrt(18)]],
                               atol=1e-5)
    np.testing.assert_allclose(compute_distance(q, g, "cosine"), [[0.0, 0.2]], atol=1e-6)
    monkeypatch.setattr(protocol, "CHUNK_ELEMENTS", 50)  # 2 query rows per chunk
    torch.manual_seed(0)
    qf, gf = torch.randn(7, 5), torch.randn(25, 5)
    np.testing.assert_allclose(compute_distance(qf, gf, "euclidean"), torch.cdist(qf, gf),
                               atol=1e-5)
    with pytest.raises(ValueError, match="TEST.METRIC"):
        compute_distance(q, g, "manhattan")


def test_average_and_alpha_query_expansion_by_hand():
    q = torch.tensor([[1.0, 0.0]])
    g = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    s = 2 ** -0.5
    want = torch.tensor([1 + s + 0.0, 0 + s + 1.0])  # query + top-2 (g0 at sim s, g1 at 0)
    assert torch.allclose(query_expansion(q, g, k=2)[0], want / want.norm(), atol=1e-6)
    want = torch.tensor([1 + s ** 3 * s, s ** 3 * s])  # g1 has weight 0 ** 3
    alpha = query_expansion(q, g, k=2, alpha=3.0)
    assert torch.allclose(alpha[0], want / want.norm(), atol=1e-6)
    with pytest.raises(ValueError, match="TEST.QE.K"):
        query_expansion(q, g, k=0)


def test_database_augmentation_and_chunks_match_a_per_row_loop(monkeypatch):
    monkeypatch.setattr(protocol, "CHUNK_ELEMENTS", 40)
    torch.manual_seed(1)
    g = torch.nn.functional.normalize(torch.randn(12, 4), dim=1)
    got = database_augmentation(g, k=3, alpha=2.0)
    for i in range(12):
        sims = g @ g[i]
        top = torch.argsort(sims, descending=True)[:3]
        assert top[0] == i  # itself first
        want = (sims[top].clamp_min(0) ** 2)[:, None].mul(g[top]).sum(0)
        assert torch.allclose(got[i], want / want.norm(), atol=1e-5)


def test_dsr_zero_inside_the_gallery_span_matches_ridge_solution_and_candidates():
    torch.manual_seed(0)
    g = torch.randn(3, 6, 2, 2)
    part = g[0][:, :1, :]  # a partial query: one row of gallery map 0
    got = dsr_distance(part[None], g, lam=1e-6, normalize=False)
    assert got[0, 0] < 1e-3 and got[0, 1] > 0.1 and got[0, 2] > 0.1
    q = torch.randn(2, 6, 1, 3)
    weights = torch.tensor([[0.2, 0.3, 0.5], [1.0, 1.0, 1.0]])
    full = dsr_distance(q, g, lam=0.5, q_weights=weights, normalize=False)
    for i in range(2):
        for j in range(3):
            y, x = g[j].flatten(1).double().numpy(), q[i].flatten(1).double().numpy()
            w = np.linalg.solve(y.T @ y + 0.5 * np.eye(4), y.T @ x)
            want = (np.linalg.norm(x - y @ w, axis=0) * weights[i].numpy()).sum()
            assert full[i, j] == pytest.approx(want, rel=1e-4)
    some = dsr_distance(q, g, lam=0.5, q_weights=weights, normalize=False,
                        candidates=np.array([[2, 0], [1, 1]]))
    assert np.isinf(some[0, 1]) and np.isinf(some[1, 0]) and np.isinf(some[1, 2])
    np.testing.assert_allclose(some[[0, 0, 1], [2, 0, 1]], full[[0, 0, 1], [2, 0, 1]])
    normalised = dsr_distance(q, g)  # position vectors scaled to unit norm: scale-free
    np.testing.assert_allclose(normalised, dsr_distance(3 * q, 0.5 * g), rtol=1e-4)


def features(seed=0, num_q=20, num_g=80, ids=8):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((ids, 16))
    q_pids, g_pids = rng.integers(0, ids, num_q), rng.integers(0, ids, num_g)
    qf = torch.tensor(centers[q_pids] + rng.standard_normal((num_q, 16)), dtype=torch.float32)
    gf = torch.tensor(centers[g_pids] + rng.standard_normal((num_g, 16)), dtype=torch.float32)
    return qf, gf, q_pids, g_pids, rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)


def test_evaluate_features_composes_distance_expansion_rank_and_roc():
    qf, gf, *ids = features()
    got = evaluate_features(qf, gf, *ids, metric="euclidean", qe=(True, 3, 0.0), roc=True,
                            max_rank=5)
    dist = compute_distance(query_expansion(qf, gf, 3), gf, "euclidean")
    np.testing.assert_array_equal(got["distmat"], dist)
    ranks = evaluate_rank(dist, *ids, max_rank=10)
    assert (got["mAP"], got["mINP"]) == (ranks["mAP"], ranks["mINP"])
    assert (got["rank1"], got["rank5"], got["rank10"]) == tuple(ranks["cmc"][[0, 4, 9]])
    roc = evaluate_roc(dist, *ids)
    assert got["TPR@FPR=1e-02"] == roc["tpr_at_fpr"][1e-2]
    np.testing.assert_array_equal(got["roc_curve"]["fpr"], roc["fpr"])


def test_evaluate_from_config_reads_the_test_section_and_calls_re_ranking(monkeypatch):
    calls = []

    def fake_re_ranking_features(qf, gf, k1, k2, lambda_value, metric):
        calls.append((qf, gf, k1, k2, lambda_value, metric))
        return compute_distance(qf, gf, metric)

    module = types.ModuleType("uda_reid.evaluation.rerank")
    module.re_ranking_features = fake_re_ranking_features
    monkeypatch.setitem(sys.modules, "uda_reid.evaluation.rerank", module)
    qf, gf, *ids = features(1)
    cfg = load_config(None, ["TEST.RERANK.ENABLED", "True", "TEST.RERANK.K1", "7",
                             "TEST.QE.ENABLED", "True", "TEST.QE.K", "2", "TEST.QE.DATABASE",
                             "True", "TEST.ROC.ENABLED", "True", "TEST.ROC.FPRS", "(0.1,)",
                             "TEST.ROC.FASTREID_COMPAT", "True", "TEST.SKIP_NO_MATCH",
                             "False", "TEST.PROTOCOL", "cuhk03"])
    got = evaluate_from_config(cfg, qf, gf, *ids)
    (q_used, g_used, k1, k2, lam, metric), = calls
    expected_g = database_augmentation(gf, 2)
    assert torch.allclose(g_used, expected_g)
    assert torch.allclose(q_used, query_expansion(qf, expected_g, 2))
    assert (k1, k2, lam, metric) == (7, 6, 0.3, "cosine")
    assert set(got) >= {"mAP", "rank1", "TPR@FPR=1e-01", "distmat", "roc_curve"}
    want = evaluate_roc(got["distmat"], *ids, fprs=(0.1,), fastreid_compat=True)
    assert got["TPR@FPR=1e-01"] == want["tpr_at_fpr"][0.1]
    cuhk = evaluate_rank(got["distmat"], *ids, protocol="cuhk03", skip_no_match=False)
    assert got["rank1"] == cuhk["cmc"][0]


def test_options_tuples_take_their_defaults_and_values_from_the_test_subsections():
    from uda_reid.config.sections.test import QueryExpansionConfig, RerankConfig, RocConfig
    from uda_reid.evaluation.evaluator import (QueryExpansionOptions, RerankOptions, RocOptions,
                                               options_from_section)

    for options, section in ((RerankOptions, RerankConfig), (RocOptions, RocConfig),
                             (QueryExpansionOptions, QueryExpansionConfig)):
        assert options_from_section(options, section()) == options()
    assert options_from_section(RerankOptions, RerankConfig(ENABLED=True, K1=7, LAMBDA=0.5)) \
        == (True, 7, 6, 0.5)
    assert options_from_section(QueryExpansionOptions, QueryExpansionConfig(K=3, ALPHA=2.0)) \
        == (False, 3, 2.0, False)
    with pytest.raises(TypeError, match="RocConfig has 3 keys, RerankOptions 4 fields"):
        options_from_section(RerankOptions, RocConfig())
