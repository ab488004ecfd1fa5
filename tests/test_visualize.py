"""Rank-list grids and the ROC plot are PNG files of the expected layout."""
import numpy as np
from PIL import Image

from uda_reid.evaluation.visualize import cell_size, save_rank_lists, save_roc_plot


def images(tmp_path, n):
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.jpg"
        Image.new("RGB", (32 + i, 64), (40 * i, 0, 0)).save(p)
        paths.append(str(p))
    return paths


def test_rank_list_grid_removes_same_camera_matches_and_colours_by_identity(tmp_path):
    paths = images(tmp_path, 5)
    # gallery: id1/cam0 at 0.1 (removed: query's id and camera), id2 at 0.5, id1/cam1 at 0.3,
    # id3 at 0.3 (tie with the match: the lower gallery index comes first)
    distmat = np.array([[0.1, 0.5, 0.3, 0.3]], dtype=np.float32)
    files = save_rank_lists(distmat, paths[:1], paths[1:], np.array([1]),
                            np.array([1, 2, 1, 3]), np.array([0]), np.array([0, 1, 1, 0]),
                            tmp_path / "vis", topk=5)
    assert [f.name for f in files] == ["query_00000_img0.png"]
    img = Image.open(files[0])
    w, h = cell_size()
    assert img.format == "PNG" and img.size == (4 * w, h)  # query + 3 kept gallery images
    colours = [img.getpixel((n * w + 1, 1)) for n in range(4)]
    assert colours == [(0, 0, 200), (0, 170, 0), (210, 0, 0), (210, 0, 0)]
    assert not list((tmp_path / "vis").glob("*.tmp"))


def test_queries_spread_over_the_list_and_topk_limits_the_row(tmp_path):
    paths = images(tmp_path, 8)
    distmat = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    files = save_rank_lists(distmat, paths[:5], paths[5:], np.arange(5), np.array([0, 4, 9]),
                            np.zeros(5, int), np.ones(3, int), tmp_path / "vis",
                            num_queries=3, topk=2)
    assert [f.name[:11] for f in files] == ["query_00000", "query_00002", "query_00004"]
    assert all(Image.open(f).size == (3 * cell_size()[0], cell_size()[1]) for f in files)


def test_roc_plot_is_a_png(tmp_path):
    path = save_roc_plot(np.linspace(0, 1, 5), np.linspace(0, 1, 5), tmp_path / "roc.png")
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (500, 400)
