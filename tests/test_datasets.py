"""Real dataset parsers on fixture trees written in the authors' exact layouts."""
from pathlib import Path

import pytest
from PIL import Image

from uda_reid.data.datasets import DATASETS, DatasetLayoutError, build_dataset, with_pids


def touch_jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16)).save(path)


def market_tree(root: Path) -> Path:
    base = root / "Market-1501-v15.09.15"
    for name in ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s2_001234_02.jpg"]:
        touch_jpg(base / "bounding_box_train" / name)
    for name in ["0002_c1s1_000100_00.jpg", "0007_c6s1_000200_00.jpg"]:
        touch_jpg(base / "query" / name)
    for name in ["0002_c1s1_000300_01.jpg", "0002_c4s1_000300_01.jpg", "0000_c2s1_000001_01.jpg",
                 "-1_c3s1_000002_01.jpg", "0007_c5s1_000900_01.jpg"]:
        touch_jpg(base / "bounding_box_test" / name)
    (base / "bounding_box_test" / "Thumbs.db").write_text("not an image")
    return base


def test_market_parses_junk_out_distractors_in_and_relabels_train(tmp_path):
    market_tree(tmp_path)
    ds = build_dataset("market", str(tmp_path))
    assert ds.name == "market1501"
    assert sorted((s[1], s[2]) for s in ds.train) == [(0, 0), (0, 1), (1, 2)]
    assert [s[3] for s in ds.train] == [0, 1, 2]
    assert sorted((s[1], s[2]) for s in ds.query) == [(2, 0), (7, 5)]
    gallery = sorted((s[1], s[2]) for s in ds.gallery)
    assert gallery == [(0, 1), (2, 0), (2, 3), (7, 4)]  # -1 junk dropped, 0000 kept
    assert ds.num_train_pids == 2 and ds.num_cameras == 6
    summary = ds.summary()
    assert "gallery  |      3 |        4 |         4" in summary


def test_market_bad_file_name_is_an_error_naming_it(tmp_path):
    base = market_tree(tmp_path)
    touch_jpg(base / "query" / "person_7.jpg")
    with pytest.raises(DatasetLayoutError, match="person_7.jpg"):
        build_dataset("market1501", str(tmp_path))


def test_missing_folder_names_path_layout_and_suggests_synthetic(tmp_path):
    base = market_tree(tmp_path)
    for f in (base / "query").iterdir():
        f.unlink()
    (base / "query").rmdir()
    with pytest.raises(DatasetLayoutError) as err:
        build_dataset("market1501", str(tmp_path))
    msg = str(err.value)
    assert str(base / "query") in msg and "bounding_box_train" in msg and "synth-market" in msg


def test_empty_split_is_an_error(tmp_path):
    base = market_tree(tmp_path)
    for f in (base / "query").iterdir():
        f.unlink()
    with pytest.raises(DatasetLayoutError, match="query split"):
        build_dataset("market1501", str(tmp_path))


def test_duke_layout_and_camera_range(tmp_path):
    base = tmp_path / "DukeMTMC-reID"
    for name in ["0001_c2_f0046182.jpg", "0001_c8_f0046999.jpg", "0005_c1_f0000001.jpg"]:
        touch_jpg(base / "bounding_box_train" / name)
    touch_jpg(base / "query" / "0010_c3_f0000010.jpg")
    touch_jpg(base / "bounding_box_test" / "0010_c4_f0000011.jpg")
    ds = build_dataset("duke", str(tmp_path))
    assert sorted((s[1], s[2]) for s in ds.train) == [(0, 1), (0, 7), (1, 0)]
    touch_jpg(base / "query" / "0010_c9_f0000012.jpg")
    with pytest.raises(DatasetLayoutError, match="Camera 9"):
        build_dataset("dukemtmc", str(tmp_path))


def test_msmt17_list_files_train_plus_val(tmp_path):
    base = tmp_path / "MSMT17_V1"
    lines = {"list_train.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0",
                                "0000/0000_001_05_0303morning_0016_0.jpg 0"],
             "list_val.txt": ["0001/0001_000_15_0303noon_0001_1.jpg 1"],
             "list_query.txt": ["0003/0003_000_02_0303morning_0030_0.jpg 3"],
             "list_gallery.txt": ["0003/0003_004_07_0303afternoon_0040_0.jpg 3"]}
    for fname, rows in lines.items():
        base.mkdir(parents=True, exist_ok=True)
        (base / fname).write_text("\n".join(rows) + "\n")
    (base / "train").mkdir()
    (base / "test").mkdir()
    ds = build_dataset("msmt", str(tmp_path))
    assert sorted((s[1], s[2]) for s in ds.train) == [(0, 0), (0, 4), (1, 14)]
    assert ds.train[0][0] == str(base / "train" / "0000/0000_000_01_0303morning_0015_0.jpg")
    assert [(s[1], s[2]) for s in ds.gallery] == [(3, 6)]
    (base / "list_query.txt").write_text("garbage line\n")
    with pytest.raises(DatasetLayoutError, match="list_query.txt:1"):
        build_dataset("msmt17", str(tmp_path))


def test_registry_names_and_aliases():
    for name, alias in (("market1501", "market"), ("dukemtmc", "duke"), ("msmt17", "msmt")):
        assert DATASETS.get(name) is DATASETS.get(alias)
    with pytest.raises(KeyError, match="market1501"):
        DATASETS.get("market1510")


def test_msmt17_missing_list_or_folder_names_it_and_suggests_synthetic(tmp_path):
    base = tmp_path / "MSMT17_V1"
    (base / "train").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="test") as err:
        build_dataset("msmt17", str(tmp_path))
    assert "list_gallery.txt" in str(err.value) and "synth-duke" in str(err.value)
    (base / "test").mkdir()
    with pytest.raises(DatasetLayoutError, match="list_train.txt") as err:
        build_dataset("msmt17", str(tmp_path))
    assert "synth-market" in str(err.value)


def test_nothing_present_suggests_the_synthetic_domains(tmp_path):
    for name, folder in (("market", "Market-1501-v15.09.15"), ("duke", "DukeMTMC-reID")):
        with pytest.raises(DatasetLayoutError) as err:
            build_dataset(name, str(tmp_path))
        assert str(tmp_path / folder) in str(err.value)
        assert "synth-market" in str(err.value) and "synth-duke" in str(err.value)


def test_with_pids_hides_or_replaces_ids_and_keeps_the_rest():
    samples = [("a.jpg", 3, 0, 0), ("b.jpg", 4, 2, 1)]
    assert with_pids(samples, [-1, -1]) == [("a.jpg", -1, 0, 0), ("b.jpg", -1, 2, 1)]
    assert with_pids(samples, [9, 8]) == [("a.jpg", 9, 0, 0), ("b.jpg", 8, 2, 1)]
    with pytest.raises(ValueError, match="1 ids for 2 samples"):
        with_pids(samples, [1])
