"""Camera-style sampling: the original for its own camera, the generated image otherwise, the
styled files handed to a method under anonymous names."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camstyle_standins import camera_gain, write_standins
from uda_reid.adapt.camstyle_data import (CamStyleFolder, CamStyleMissingError,
                                          CamStyleNameError, camstyle_path, check_camstyle_dir,
                                          released_fake_name)
from uda_reid.data.loaders import build_shuffled_loader
from uda_reid.adapt.guard import method_inputs, slot_order

NUM_CAMS = 3


def make_target(root: Path, num_images: int = 4):
    train = root / "bounding_box_train"
    train.mkdir(parents=True)
    samples = []
    for i in range(num_images):
        camid = i % NUM_CAMS
        colour = (200 * camera_gain(camid)).astype(np.uint8)
        path = train / f"{i:04d}_c{camid + 1}_f{i:07d}.jpg"
        Image.new("RGB", (16, 32), tuple(int(c) for c in colour)).save(path, quality=95)
        samples.append((str(path), -1, camid, i))
    return samples


def mean_colour(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(axis=0)


class Split:
    def __init__(self, name, samples):
        self.name, self.train, self.num_cameras = name, samples, NUM_CAMS


def released_naming(stem, camid, style):
    """ECN's released MSMT17 naming, ``<stem>_fake_<c'>.jpg``."""
    return released_fake_name(stem, style)


def styled_target(tmp_path, num_images=4, seed=0, naming=None):
    """The method's view of a target with stand-in camera styles (named by ``naming``, default
    the contract's), read through the folder check, and its slot order."""
    samples = [(p, 7, c, i) for p, _, c, i in make_target(tmp_path / "data", num_images)]
    write_standins(tmp_path / "data", samples, NUM_CAMS, *([naming] if naming else []))
    folder = check_camstyle_dir(tmp_path / "data", samples, NUM_CAMS, "t")
    _, target, _ = method_inputs(Split("s", samples), Split("t", samples), tmp_path / "inputs",
                                 seed, folder)
    return samples, target, slot_order(len(samples), seed)


def test_generated_name_follows_the_contract():
    assert camstyle_path("/c", "/d/bounding_box_train/0002_c3_f0000123.jpg", 2, 0) == \
        Path("/c/0002_c3_f0000123_fake_3to1.jpg")


@pytest.mark.parametrize("naming", [None, released_naming], ids=["c_to_c'", "released_c'"])
def test_sampling_draws_every_camera_and_each_image_has_that_cameras_colour(tmp_path, naming):
    samples, target, order = styled_target(tmp_path, naming=naming)
    data = target.dataset(None, camstyle=True)
    plain = target.dataset(None)
    torch.manual_seed(0)
    seen = Counter()
    for _ in range(20):
        for slot, i in enumerate(order):
            item = data[slot]
            style = item["camids"]
            seen[(slot, style)] += 1
            assert item["indexes"] == slot and item["pids"] == -1 and "paths" not in item
            expected = 200 * camera_gain(style)
            assert np.abs(mean_colour(item["images"]) - expected).max() < 4.0
            if style == samples[i][2]:  # its own camera: the original image
                assert mean_colour(item["images"]).tolist() == \
                    mean_colour(plain[slot]["images"]).tolist()
    assert all(seen[(s, c)] > 0 for s in range(len(samples)) for c in range(NUM_CAMS))
    with pytest.raises(ValueError, match="no camera-style images"):
        method_inputs(Split("s", samples), Split("t", samples), tmp_path / "plain", 0)[1] \
            .dataset(None, camstyle=True)


def test_missing_camstyle_folder_stops_with_the_generation_command(tmp_path):
    samples = make_target(tmp_path)
    with pytest.raises(CamStyleMissingError) as err:
        check_camstyle_dir(tmp_path, samples, NUM_CAMS, "synth-duke")
    message = str(err.value)
    assert "bounding_box_train_camstyle" in message
    assert "python tools/camstyle.py train --dataset synth-duke" in message
    assert "python tools/camstyle.py generate --dataset synth-duke" in message
    assert "ADAPT.ECN.CAMSTYLE False" in message


def test_incomplete_camstyle_folder_names_missing_files(tmp_path):
    samples = make_target(tmp_path)
    folder = write_standins(tmp_path, samples, NUM_CAMS)
    assert check_camstyle_dir(tmp_path, samples, NUM_CAMS, "synth-duke") == \
        CamStyleFolder(folder, with_source_camera=True)
    (folder / "0001_c2_f0000001_fake_2to3.jpg").unlink()
    with pytest.raises(CamStyleMissingError, match="lacks 1 of the 8.*0001_c2_f0000001_fake_2to3"):
        check_camstyle_dir(tmp_path, samples, NUM_CAMS, "synth-duke")


def test_target_loader_gives_full_shuffled_batches_of_styled_unlabelled_images(tmp_path):
    from uda_reid.data.transforms import build_transforms

    _, target, _ = styled_target(tmp_path, num_images=7)
    transform = build_transforms((32, 16), is_train=True)
    loader = build_shuffled_loader(target.dataset(transform, camstyle=True), 3)
    loader.batch_sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 2 and all(b["images"].shape == (3, 3, 32, 16) for b in batches)
    assert set(batches[0]) == {"images", "pids", "camids", "indexes"}
    indexes = torch.cat([b["indexes"] for b in batches]).tolist()
    assert len(set(indexes)) == 6 and all(b["pids"].eq(-1).all() for b in batches)
    loader.batch_sampler.set_epoch(0)
    assert torch.cat([b["indexes"] for b in loader]).tolist() == indexes  # same epoch, same order
    loader.batch_sampler.set_epoch(1)
    assert torch.cat([b["indexes"] for b in loader]).tolist() != indexes


def test_both_namings_are_recognised_and_read_from_the_right_files(tmp_path):
    samples = make_target(tmp_path / "ours")
    write_standins(tmp_path / "ours", samples, NUM_CAMS)
    ours = check_camstyle_dir(tmp_path / "ours", samples, NUM_CAMS, "t")
    released_samples = make_target(tmp_path / "released")
    write_standins(tmp_path / "released", released_samples, NUM_CAMS, released_naming)
    (tmp_path / "released" / "bounding_box_train_camstyle" / ".manifest").mkdir()  # skipped
    released = check_camstyle_dir(tmp_path / "released", released_samples, NUM_CAMS, "t")
    assert ours.with_source_camera and not released.with_source_camera
    img = "/d/bounding_box_train/0002_c3_f0000123.jpg"
    assert ours.image(img, 2, 0).name == "0002_c3_f0000123_fake_3to1.jpg"
    assert released.image(img, 2, 0).name == "0002_c3_f0000123_fake_1.jpg"
    assert sorted(p.name for p in released.path.glob("0001_*")) == [
        "0001_c2_f0000001_fake_1.jpg", "0001_c2_f0000001_fake_3.jpg"]
    (released.path / "0001_c2_f0000001_fake_3.jpg").unlink()
    with pytest.raises(CamStyleMissingError, match=r"lacks 1 of the 8.*_fake_<c'>\.jpg.*"
                                                   r"0001_c2_f0000001_fake_3\.jpg"):
        check_camstyle_dir(tmp_path / "released", released_samples, NUM_CAMS, "t")


@pytest.mark.parametrize("name,message", [
    ("0001_c2_f0000001_fake_x.jpg", "not a camera-style image name"),
    ("0001_c2_f0000001_2to3.jpg", "not a camera-style image name"),
    ("0001_c2_f0000001_fake_2to3.png", "not a camera-style image name"),
    ("0001_c2_f0000001_fake_2to4.jpg", "camera 4 outside 1..3"),
    ("0001_c2_f0000001_fake_0.jpg", "camera 0 outside 1..3"),
    ("0001_c2_f0000001_fake_1to3.jpg", "names camera 1 as its source, but the training image "
                                       "0001_c2_f0000001 is from camera 2"),
    ("0001_c2_f0000001_fake_3.jpg", "mixes the two namings"),
])
def test_a_bad_name_in_the_folder_is_an_error_naming_the_file(tmp_path, name, message):
    samples = make_target(tmp_path)
    folder = write_standins(tmp_path, samples, NUM_CAMS)
    (folder / name).write_bytes(b"")
    with pytest.raises(CamStyleNameError, match=message) as err:
        check_camstyle_dir(tmp_path, samples, NUM_CAMS, "synth-duke")
    assert name in str(err.value) and "\n" not in str(err.value)
