"""Custom datasets from list files / file-name patterns, and VehicleID with its test protocol,
on trees written in tmp_path."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from uda_reid.config import load_config
from uda_reid.data.datasets import DatasetLayoutError, build_dataset, build_dataset_from_config
from uda_reid.data.datasets.custom import CustomDataset
from uda_reid.data.datasets.vehicleid import VehicleIDSmall, random_gallery_splits
from uda_reid.data.loaders import read_image
from uda_reid.data.transforms import build_transforms_from_config
from uda_reid.engine.evaluate import evaluate_dataset
from uda_reid.evaluation import evaluate_distances, evaluate_features


def touch(path: Path, color=(0, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16), color).save(path)
    return path


def write_list(path: Path, lines) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path.name


def list_tree(root: Path, cameras: bool) -> Path:
    """train: ids 10, 20 (cameras 5, 7); query: id 10; gallery: ids 10, 20; images touched."""
    base = root / "mydata"
    rows = {"train.txt": [("img/t0.jpg", 10, 5), ("img/t1.jpg", 10, 7), ("img/t2.jpg", 20, 5)],
            "query.txt": [("img/q0.jpg", 10, 5)],
            "gallery.txt": [("img/g0.jpg", 10, 7), ("img/g1.jpg", 20, 5),
                            ("img/junk.jpg", -1, 5)]}
    for name, items in rows.items():
        for rel, _, _ in items:
            touch(base / rel)
        write_list(base / name, [f"{rel} {pid}" + (f" {cam}" if cameras else "")
                                 for rel, pid, cam in items])
    return base


def custom_cfg(root: Path, *pairs):
    return load_config(None, ["DATASETS.ROOT", str(root), "DATASETS.CUSTOM.TRAIN", "mydata/train.txt",
                              "DATASETS.CUSTOM.QUERY", "mydata/query.txt",
                              "DATASETS.CUSTOM.GALLERY", "mydata/gallery.txt", *map(str, pairs)])


def test_list_file_dataset_parses_ids_cameras_and_paths(tmp_path):
    base = list_tree(tmp_path, cameras=True)
    ds = build_dataset_from_config(custom_cfg(tmp_path), "custom")
    assert ds.has_cameras
    # train relabelled 10 -> 0, 20 -> 1; cameras 5 -> 0, 7 -> 1; paths from the list's folder
    assert ds.train == [(str(base / "img/t0.jpg"), 0, 0, 0), (str(base / "img/t1.jpg"), 0, 1, 1),
                        (str(base / "img/t2.jpg"), 1, 0, 2)]
    assert ds.query == [(str(base / "img/q0.jpg"), 10, 0, 0)]
    # the junk id -1 is skipped; test ids keep their values
    assert ds.gallery == [(str(base / "img/g0.jpg"), 10, 1, 0), (str(base / "img/g1.jpg"), 20, 0, 1)]


def test_image_root_and_comments(tmp_path):
    touch(tmp_path / "pics" / "a.jpg")
    touch(tmp_path / "pics" / "b.jpg")
    write_list(tmp_path / "lists" / "all.txt", ["# path pid cam", "", "a.jpg 3 1  # first",
                                                "b.jpg 4 2"])
    ds = CustomDataset("lists/all.txt", "lists/all.txt", "lists/all.txt", str(tmp_path),
                       image_root="pics")
    assert [(Path(p).name, pid, cam) for p, pid, cam, _ in ds.query] == [("a.jpg", 3, 0),
                                                                         ("b.jpg", 4, 1)]


def test_without_cameras_every_test_image_is_its_own_camera(tmp_path, caplog):
    list_tree(tmp_path, cameras=False)
    with caplog.at_level("WARNING"):
        ds = build_dataset_from_config(custom_cfg(tmp_path), "custom")
    assert not ds.has_cameras
    assert "no camera ids" in caplog.text and "no same-camera filtering" in caplog.text
    assert {s[2] for s in ds.train} == {0}
    test_cams = [s[2] for s in ds.query + ds.gallery]
    assert len(set(test_cams)) == len(test_cams) == 3


def test_list_dataset_without_cameras_counts_a_match_a_shared_camera_would_drop(tmp_path):
    """The query's only true match is an image that, with a single camera for all (what
    datasets without cameras usually get), the same-camera filter would remove."""
    base = tmp_path / "d"
    for name in ("q.jpg", "match.jpg", "other.jpg"):
        touch(base / name)
    write_list(base / "train.txt", ["match.jpg 1", "other.jpg 2"])
    write_list(base / "query.txt", ["q.jpg 1"])
    # the gallery lists the query image itself too: it must not count as its own match
    write_list(base / "gallery.txt", ["other.jpg 2", "match.jpg 1", "q.jpg 1"])
    ds = CustomDataset("d/train.txt", "d/query.txt", "d/gallery.txt", str(tmp_path))
    q_pids, q_cams = [s[1] for s in ds.query], [s[2] for s in ds.query]
    g_pids, g_cams = [s[1] for s in ds.gallery], [s[2] for s in ds.gallery]
    # distances: other 0.2 (a wrong id, ranked first), match 0.5, the query itself 0.0
    dist = np.array([[0.2, 0.5, 0.0]], dtype=np.float32)
    got = evaluate_distances(dist, q_pids, g_pids, q_cams, g_cams)
    assert got["num_valid_queries"] == 1 and got["num_no_match"] == 0
    # the match is ranked 2nd once the query's own copy is removed: AP = 1/2, rank-1 0
    assert got["mAP"] == pytest.approx(0.5) and got["rank1"] == 0.0 and got["rank5"] == 1.0
    one_camera = evaluate_distances(dist, q_pids, g_pids, [0], [0, 0, 0], skip_no_match=False)
    assert one_camera["num_no_match"] == 1 and one_camera["mAP"] == 0.0


@pytest.mark.parametrize("line,why", [("img/x.jpg seven 1", "cannot parse"),
                                      ("img/x.jpg 1 2 3", "4 fields"),
                                      ("img/x.jpg", "1 fields"),
                                      ("img/missing.jpg 3 1", "does not exist")])
def test_bad_list_lines_name_file_and_line(tmp_path, line, why):
    base = list_tree(tmp_path, cameras=True)
    touch(base / "img" / "x.jpg")
    write_list(base / "query.txt", ["img/q0.jpg 10 5", line])
    with pytest.raises(DatasetLayoutError, match=f"{base / 'query.txt'}:2: .*{why}"):
        build_dataset_from_config(custom_cfg(tmp_path), "custom")


def test_cameras_on_some_lines_only_is_an_error_naming_both(tmp_path):
    base = list_tree(tmp_path, cameras=True)
    write_list(base / "gallery.txt", ["img/g0.jpg 10 7", "img/g1.jpg 20"])
    with pytest.raises(DatasetLayoutError) as err:
        build_dataset_from_config(custom_cfg(tmp_path), "custom")
    assert f"{base / 'train.txt'}:1 has one" in str(err.value)
    assert f"{base / 'gallery.txt'}:2 has none" in str(err.value)


def test_missing_keys_and_files_are_named(tmp_path):
    list_tree(tmp_path, cameras=True)
    with pytest.raises(ValueError, match="DATASETS.CUSTOM.GALLERY is empty"):
        CustomDataset("mydata/train.txt", "mydata/query.txt", "", str(tmp_path))
    with pytest.raises(DatasetLayoutError, match="Missing list file .*nope.txt"):
        build_dataset_from_config(custom_cfg(tmp_path, "DATASETS.CUSTOM.QUERY", "nope.txt"),
                                  "custom")
    with pytest.raises(ValueError, match="build_dataset_from_config"):
        build_dataset("custom", str(tmp_path))


def test_image_folders_with_the_market_pattern_and_a_pattern_without_cameras(tmp_path):
    for split, names in {"tr": ["0001_c1_a.jpg", "0002_c3_b.png"], "q": ["0001_c2_x.jpg"],
                         "g": ["0001_c1_y.jpg", "-1_c1_z.jpg", "0005_c3_w.jpg"]}.items():
        for name in names:
            touch(tmp_path / split / name)
    (tmp_path / "g" / "notes.txt").write_text("not an image")
    ds = CustomDataset("tr", "q", "g", str(tmp_path))  # the default Market-style pattern
    assert [(s[1], s[2]) for s in ds.train] == [(0, 0), (1, 2)]
    assert [(s[1], s[2]) for s in ds.query] == [(1, 1)]
    assert [(s[1], s[2]) for s in ds.gallery] == [(1, 0), (5, 2)]
    plain = CustomDataset("tr", "q", "g", str(tmp_path), pattern=r"(-?\d+)_.*")
    assert not plain.has_cameras and len({s[2] for s in plain.query + plain.gallery}) == 3
    touch(tmp_path / "q" / "person7.jpg")
    with pytest.raises(DatasetLayoutError, match="person7.jpg does not match"):
        CustomDataset("tr", "q", "g", str(tmp_path))
    with pytest.raises(ValueError, match="no group for the id"):
        CustomDataset("tr", "q", "g", str(tmp_path), pattern=r"\d+_.*")


# ---------------------------------------------------------------- VehicleID


def vehicleid_tree(root: Path, test_ids: int, per_id: int = 3, images: bool = False) -> Path:
    """VehicleID_V1.0 with 4 training vehicles and ``test_ids`` test vehicles of ``per_id``
    images; with ``images`` the files exist, coloured by vehicle id."""
    base = root / "VehicleID_V1.0"
    (base / "image").mkdir(parents=True)
    train = [f"{1000 + i:07d} {7 + i // 2}" for i in range(8)]
    test = [f"{5000 + v * per_id + k:07d} {100 + v}" for v in range(test_ids)
            for k in range(per_id)]
    write_list(base / "train_test_split" / "train_list.txt", train)
    write_list(base / "train_test_split" / f"test_list_{test_ids}.txt", test)
    if images:
        for line in test:
            name = line.split()[0]
            colour = np.random.default_rng(int(name)).integers(0, 256, 3)
            touch(base / "image" / f"{name}.jpg", color=tuple(int(c) for c in colour))
    return base


def test_vehicleid_parses_lists_and_draws_ten_gallery_splits(tmp_path):
    base = vehicleid_tree(tmp_path, test_ids=800)
    ds = build_dataset("vehicleid", str(tmp_path))
    assert ds.name == "vehicleid" and len(ds.test_splits) == 10
    assert ds.train[0] == (str(base / "image" / "0001000.jpg"), 0, 0, 0)
    assert ds.num_train_pids == 4 and {s[2] for s in ds.train} == {0}
    test = ds.query + ds.gallery
    assert len(test) == 2400 and len({s[2] for s in test}) == 2400  # a camera per image
    pids = np.array([s[1] for s in test])
    first_q, first_g = ds.test_splits[0]
    assert first_q.tolist() == list(range(1600)) and first_g.tolist() == list(range(1600, 2400))
    galleries = set()
    for q, g in ds.test_splits:
        assert sorted(pids[g].tolist()) == list(range(100, 900))  # one image per vehicle
        assert sorted(q.tolist() + g.tolist()) == list(range(2400))  # the rest are queries
        galleries.add(tuple(sorted(test[i][0] for i in g)))
    assert len(galleries) == 10  # ten different draws
    again = build_dataset("vehicleid-800", str(tmp_path))  # fixed seed: the same draws
    assert [p for p, *_ in again.gallery] == [p for p, *_ in ds.gallery]


def test_vehicleid_bad_line_missing_list_and_wrong_size_are_named(tmp_path):
    base = vehicleid_tree(tmp_path, test_ids=800)
    with pytest.raises(DatasetLayoutError, match="test_list_1600.txt"):
        build_dataset("vehicleid-medium", str(tmp_path))
    (base / "train_test_split" / "test_list_800.txt").rename(
        base / "train_test_split" / "test_list_1600.txt")
    with pytest.raises(DatasetLayoutError, match="800 vehicles, the 1600-vehicle test set"):
        build_dataset("vehicleid-1600", str(tmp_path))
    write_list(base / "train_test_split" / "train_list.txt", ["0000001 1", "0000002"])
    with pytest.raises(DatasetLayoutError, match="train_list.txt:2: cannot parse"):
        build_dataset("vehicleid-1600", str(tmp_path))


def test_random_gallery_splits_match_a_per_identity_reference():
    pids = [4, 4, 9, 4, 9, 2]
    splits = random_gallery_splits(pids, repeats=50, seed=3)
    seen = set()
    for q, g in splits:
        assert sorted(pids[i] for i in g) == [2, 4, 9]
        assert set(q) == set(range(6)) - set(g)
        seen.add(tuple(g))
    assert len(seen) == 6  # 3 choices for id 4 x 2 for id 9: every draw appears in 50
    assert [g.tolist() for _, g in random_gallery_splits(pids, 50, 3)] == [
        g.tolist() for _, g in splits]


class MeanColour(nn.Module):
    """Images (N, 3, H, W) -> their mean colour (N, 3): a fixed feature extractor."""

    def forward(self, images):
        return images.mean(dim=(2, 3))


def test_vehicleid_evaluation_averages_the_ten_draws(tmp_path, monkeypatch):
    monkeypatch.setattr(VehicleIDSmall, "test_size", 5)
    vehicleid_tree(tmp_path, test_ids=5, images=True)
    cfg = load_config(None, ["DATASETS.ROOT", str(tmp_path), "DATASETS.NAMES", "[vehicleid]",
                             "INPUT.SIZE_TEST", "[16, 8]", "TEST.IMS_PER_BATCH", "4",
                             "DATALOADER.NUM_WORKERS", "0"])
    got = evaluate_dataset(cfg, MeanColour(), "vehicleid", torch.device("cpu"))
    # reference: features of every test image, then each draw evaluated by itself
    ds = build_dataset("vehicleid", str(tmp_path))
    transform = build_transforms_from_config(cfg, False)
    test = ds.query + ds.gallery
    feats = torch.stack([transform(read_image(s[0])) for s in test]).mean(dim=(2, 3))
    pids, cams = np.array([s[1] for s in test]), np.array([s[2] for s in test])
    per_draw = [evaluate_features(feats[q], feats[g], pids[q], pids[g], cams[q], cams[g])
                for q, g in ds.test_splits]
    for key in ("mAP", "rank1", "rank5"):
        assert got[key] == pytest.approx(np.mean([m[key] for m in per_draw]), abs=1e-9)
    assert len({round(m["mAP"], 9) for m in per_draw}) > 1  # the draws do differ
