"""evaluate_rank against a slow per-query implementation of the Market-1501 definition."""
import numpy as np
import pytest
import torch

from uda_reid.evaluation import evaluate_rank
from uda_reid.evaluation import protocol


def reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, skip_no_match):
    """Walk each query's kept list in np.argsort(kind="stable") order."""
    cmcs, aps, inps, no_match = [], [], [], 0
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        hits = (g_pids[order][keep] == q_pids[i]).astype(float)
        if hits.sum() == 0:
            no_match += 1
            if not skip_no_match:
                cmcs.append(np.zeros(max_rank))
                aps.append(0.0)
                inps.append(0.0)
            continue
        positions = np.flatnonzero(hits)
        cmc = np.zeros(max_rank)
        if positions[0] < max_rank:
            cmc[positions[0]:] = 1
        cmcs.append(cmc)
        aps.append(np.mean([(k + 1) / (p + 1) for k, p in enumerate(positions)]))
        inps.append(len(positions) / (positions[-1] + 1))
    return np.mean(cmcs, 0), np.mean(aps), np.mean(inps), no_match


def random_problem(seed, num_q=60, num_g=400, ids=40, cams=6, levels=None):
    """Several cameras, distractors (id 0), two queries without a valid match; with
    ``levels``, distances are quantised so that many positives tie with negatives."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, ids, num_q)
    g_pids = rng.integers(0, ids, num_g)
    q_camids, g_camids = rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)
    g_pids[g_pids == q_pids[0]] = 0  # query 0's id only in its own camera: no valid match
    g_pids[:3], g_camids[:3] = q_pids[0], q_camids[0]
    q_pids[1] = ids + 5  # an id absent from the gallery
    distmat = rng.random((num_q, num_g)).astype(np.float32)
    distmat -= 0.3 * (q_pids[:, None] == g_pids[None, :])
    if levels:
        distmat = np.round(distmat * levels) / levels
    return distmat, q_pids, g_pids, q_camids, g_camids


def assert_matches_reference(got, problem, max_rank, skip):
    cmc, m_ap, m_inp, no_match = reference(*problem, max_rank=max_rank, skip_no_match=skip)
    np.testing.assert_allclose(got["cmc"], cmc, atol=1e-12)
    assert got["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert got["mINP"] == pytest.approx(m_inp, abs=1e-12)
    assert got["num_no_match"] == no_match
    assert got["num_valid_queries"] == len(problem[1]) - no_match


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("levels", [None, 12])
def test_equals_reference_with_distractors_unmatched_queries_and_ties(seed, skip, levels):
    problem = random_problem(seed, levels=levels)
    got = evaluate_rank(*problem, max_rank=20, skip_no_match=skip)
    assert_matches_reference(got, problem, 20, skip)
    assert got["num_no_match"] == 2 and got["skip_no_match"] is skip


def test_many_chunks_in_threads_float64_and_torch_inputs_give_the_reference(monkeypatch):
    monkeypatch.setattr(protocol, "CHUNK_ELEMENTS", 1000)  # 3 query rows per chunk
    problem = random_problem(3, num_q=37, levels=30)
    as_torch = [torch.from_numpy(a) for a in problem]
    got = evaluate_rank(*as_torch, max_rank=15, threads=2)
    assert_matches_reference(got, problem, 15, True)
    wide = (problem[0].astype(np.float64) + 1e-9 * np.arange(400),) + problem[1:]
    assert_matches_reference(evaluate_rank(*wide, max_rank=15, threads=2), wide, 15, True)


def test_hand_made_case_and_tie_rule_by_gallery_index():
    # gallery: id1/cam0 (removed), id1/cam1, id2/cam1, id0 distractor, id1/cam2
    q_pids, q_cams = np.array([1]), np.array([0])
    g_pids, g_cams = np.array([1, 1, 2, 0, 1]), np.array([0, 1, 1, 2, 2])
    distmat = np.array([[0.0, 0.5, 0.2, 0.3, 0.9]], dtype=np.float32)
    got = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=4)
    # kept order: 0.2 (neg), 0.3 (neg), 0.5 (pos), 0.9 (pos): positives at ranks 2 and 3
    assert got["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert got["mINP"] == pytest.approx(2 / 4)
    np.testing.assert_allclose(got["cmc"], [0, 0, 1, 1])
    # positive 1 ties negative 2 at 0.2: gallery index 1 < 2, so the positive comes first
    tied = np.array([[0.0, 0.2, 0.2, 0.3, 0.9]], dtype=np.float32)
    assert evaluate_rank(tied, q_pids, g_pids, q_cams, g_cams, 4)["cmc"][0] == 1
    # positive 4 ties negative 3 at 0.3: index 3 < 4, so the negative comes first
    tied = np.array([[0.0, 0.1, 0.2, 0.3, 0.3]], dtype=np.float32)
    assert evaluate_rank(tied, q_pids, g_pids, q_cams, g_cams, 4)["mINP"] == pytest.approx(2 / 4)


def test_all_queries_without_match_is_an_error_and_bad_inputs_name_the_argument():
    distmat = np.zeros((1, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="No query has a valid gallery match"):
        evaluate_rank(distmat, np.array([1]), np.array([2, 3, 1]), np.array([0]),
                      np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(distmat, np.array([1]), np.array([2, 3]), np.array([0]), np.zeros(3))
    with pytest.raises(ValueError, match="protocol"):
        evaluate_rank(distmat, np.array([1]), np.array([2, 3, 1]), np.array([0]),
                      np.array([0, 0, 1]), protocol="viper")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(np.array([[np.nan, 0.1, 0.2]]), np.array([1]), np.array([2, 3, 1]),
                      np.array([0]), np.array([0, 0, 1]))


def test_cuhk03_single_shot_equals_market_when_each_id_has_one_kept_image():
    rng = np.random.default_rng(0)
    g_pids = np.arange(30)  # one image per id
    q_pids = rng.integers(0, 30, 20)
    q_cams, g_cams = np.zeros(20, int), np.ones(30, int)
    distmat = rng.random((20, 30)).astype(np.float32)
    market = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    cuhk = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10,
                         protocol="cuhk03")
    np.testing.assert_allclose(cuhk["cmc"], market["cmc"])
    assert cuhk["mAP"] == market["mAP"] and cuhk["protocol"] == "cuhk03"


def test_cuhk03_samples_one_image_per_identity_uniformly_and_reproducibly():
    # query id 1 (cam 0); gallery: id1 at 0.1 and 0.5, id2 at 0.3 and 0.35, id3 at 0.4,
    # id1 in the query's camera at 0.0 (removed)
    distmat = np.array([[0.1, 0.5, 0.3, 0.35, 0.4, 0.0]], dtype=np.float32)
    g_pids, g_cams = np.array([1, 1, 2, 2, 3, 1]), np.array([1, 1, 1, 1, 1, 0])
    args = (distmat, np.array([1]), g_pids, np.array([0]), g_cams)
    got = evaluate_rank(*args, max_rank=3, protocol="cuhk03", cuhk03_repeats=4000, seed=1)
    # rank 1 when 0.1 is drawn (p = 1/2); otherwise 0.5 comes after id2 and id3: rank 3
    np.testing.assert_allclose(got["cmc"], [0.5, 0.5, 1.0], atol=0.03)
    again = evaluate_rank(*args, max_rank=3, protocol="cuhk03", cuhk03_repeats=4000, seed=1)
    np.testing.assert_array_equal(got["cmc"], again["cmc"])
    # a query without a match counts as zero when not skipped
    two = (np.vstack([distmat, distmat]), np.array([1, 9]), g_pids, np.array([0, 0]), g_cams)
    kept = evaluate_rank(*two, max_rank=3, protocol="cuhk03", skip_no_match=False, seed=1,
                         cuhk03_repeats=4000)
    np.testing.assert_allclose(kept["cmc"], got["cmc"] / 2)


def test_row_wise_searchsorted_equals_numpy_with_duplicates_and_out_of_range_values():
    rng = np.random.default_rng(0)
    rows = np.sort(rng.integers(0, 6, (4, 13)).astype(np.float32), axis=1)
    which = rng.integers(0, 4, 200)
    values = rng.integers(-1, 8, 200).astype(np.float32)
    want = [np.searchsorted(rows[w], v, "left") for w, v in zip(which, values)]
    np.testing.assert_array_equal(protocol.searchsorted_rows(rows, which, values), want)
