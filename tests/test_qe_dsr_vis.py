"""Query expansion, DSR distance, distances and the PNG writers on hand-made cases."""
import numpy as np
import pytest
import torch
from PIL import Image

from uda_reid.evaluation import compute_distance, dsr_distance, query_expansion
from uda_reid.evaluation.visualize import save_rank_lists, save_roc_plot


def test_average_and_alpha_query_expansion_by_hand():
    q = torch.tensor([[1.0, 0.0]])
    g = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    got = query_expansion(q, g, k=2)
    s = 2 ** -0.5
    want = torch.tensor([1 + s + 0.0, 0 + s + 1.0])  # query + top-2 (g0, then g1 at sim 0)
    assert torch.allclose(got[0], want / want.norm(), atol=1e-6)
    alpha = query_expansion(q, g, k=2, alpha=3.0)
    want = torch.tensor([1 + s ** 3 * s, s ** 3 * s])  # g1 has weight 0 ** 3
    assert torch.allclose(alpha[0], want / want.norm(), atol=1e-6)


def test_distances_cosine_and_euclidean():
    q, g = torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(compute_distance(q, g, "euclidean"), [[0.0, np.sqrt(18)]],
                               atol=1e-5)
    np.testing.assert_allclose(compute_distance(q, g, "cosine"), [[0.0, 0.2]], atol=1e-6)
    with pytest.raises(ValueError, match="TEST.METRIC"):
        compute_distance(q, g, "manhattan")


def test_dsr_is_zero_for_a_query_inside_the_gallery_span_and_matches_lstsq():
    torch.manual_seed(0)
    g = torch.randn(2, 6, 2, 2)
    part = g[0][:, :1, :]  # a partial query made of one row of gallery 0
    got = dsr_distance(part[None], g, lam=1e-6, normalize=False)
    assert got[0, 0] < 1e-3 and got[0, 1] > 0.1
    q = torch.randn(1, 6, 1, 3)
    y = g[1].flatten(1).numpy()
    x = q[0].flatten(1).numpy()
    w = np.linalg.solve(y.T @ y + 0.5 * np.eye(4), y.T @ x)
    want = np.linalg.norm(x - y @ w, axis=0).mean()
    assert dsr_distance(q, g, lam=0.5, normalize=False)[0, 1] == pytest.approx(want, rel=1e-4)


def test_rank_list_and_roc_pngs(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"img{i}.jpg"
        Image.new("RGB", (32, 64), (60 * i, 0, 0)).save(p)
        paths.append(str(p))
    distmat = np.array([[0.1, 0.5, 0.3]], dtype=np.float32)
    files = save_rank_lists(distmat, paths[:1], paths[1:], np.array([1]), np.array([1, 2, 1]),
                            np.array([0]), np.array([0, 1, 1]), tmp_path / "vis", topk=5)
    img = Image.open(files[0])
    assert img.size[0] == 3 * (64 + 8)  # query + 2 kept gallery images (one removed)
    assert img.getpixel((72 + 1, 1)) == (0, 170, 0)  # nearest kept (0.3): same id, green
    assert img.getpixel((144 + 1, 1)) == (210, 0, 0)  # then 0.5: another id, red
    roc = save_roc_plot(np.linspace(0, 1, 5), np.linspace(0, 1, 5), tmp_path / "roc.png")
    assert Image.open(roc).format == "PNG"
