"""Camera-style sampling: the original for its own camera, the generated image otherwise, the
styled files handed to a method under anonymous names."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camstyle_standins import camera_gain, write_standins
from uda_reid.adapt.camstyle_data import CamStyleMissingError, camstyle_path, check_camstyle_dir
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


def styled_target(tmp_path, num_images=4, seed=0):
    """The method's view of a target with stand-in camera styles, and its slot order."""
    samples = [(p, 7, c, i) for p, _, c, i in make_target(tmp_path / "data", num_images)]
    folder = write_standins(tmp_path / "data", samples, NUM_CAMS)
    _, target, _ = method_inputs(Split("s", samples), Split("t", samples), tmp_path / "inputs",
                                 seed, folder)
    return samples, target, slot_order(len(samples), seed)


def test_generated_name_follows_the_contract():
    assert camstyle_path("/c", "/d/bounding_box_train/0002_c3_f0000123.jpg", 2, 0) == \
        Path("/c/0002_c3_f0000123_fake_3to1.jpg")


def test_sampling_draws_every_camera_and_each_image_has_that_cameras_colour(tmp_path):
    samples, target, order = styled_target(tmp_path)
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
    assert check_camstyle_dir(tmp_path, samples, NUM_CAMS, "synth-duke") == folder
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
