"""Camera-style sampling: the original for its own camera, the generated image otherwise."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camstyle_standins import camera_gain, write_standins
from uda_reid.adapt.camstyle_data import (CamStyleDataset, CamStyleMissingError,
                                          check_camstyle_dir, image_for_camera)

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


def test_generated_name_follows_the_contract_and_own_camera_gives_the_original(tmp_path):
    sample = ("/d/bounding_box_train/0002_c3_f0000123.jpg", -1, 2, 0)
    assert image_for_camera(tmp_path, sample, 2) == sample[0]
    assert image_for_camera(tmp_path, sample, 0) == str(tmp_path / "0002_c3_f0000123_fake_3to1.jpg")


def test_sampling_draws_every_camera_and_each_image_has_that_cameras_colour(tmp_path):
    samples = make_target(tmp_path)
    folder = write_standins(tmp_path, samples, NUM_CAMS)
    data = CamStyleDataset(samples, folder, NUM_CAMS, transform=None,
                           loader=lambda p: Image.open(p).convert("RGB"))
    torch.manual_seed(0)
    seen = Counter()
    for _ in range(20):
        for i, sample in enumerate(samples):
            item = data[i]
            style = item["camids"]
            seen[(i, style)] += 1
            assert item["indexes"] == i
            if style == sample[2]:
                assert item["paths"] == sample[0]
            else:
                assert Path(item["paths"]).name.endswith(f"_fake_{sample[2] + 1}to{style + 1}.jpg")
            expected = 200 * camera_gain(style)
            assert np.abs(mean_colour(item["images"]) - expected).max() < 4.0
    assert all(seen[(i, c)] > 0 for i in range(len(samples)) for c in range(NUM_CAMS))


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
    from uda_reid.adapt.camstyle_data import build_target_loader
    from uda_reid.adapt.guard import strip_labels
    from uda_reid.config import get_default_config

    samples = strip_labels(make_target(tmp_path, num_images=7))
    folder = write_standins(tmp_path, samples, NUM_CAMS)
    cfg = get_default_config()
    cfg.INPUT.SIZE_TRAIN = (32, 16)
    cfg.DATALOADER.NUM_WORKERS = 0
    loader = build_target_loader(cfg, samples, NUM_CAMS, batch_size=3, camstyle_dir=folder)
    loader.batch_sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 2 and all(b["images"].shape == (3, 3, 32, 16) for b in batches)
    indexes = torch.cat([b["indexes"] for b in batches]).tolist()
    assert len(set(indexes)) == 6 and all(b["pids"].eq(-1).all() for b in batches)
    loader.batch_sampler.set_epoch(0)
    assert torch.cat([b["indexes"] for b in loader]).tolist() == indexes  # same epoch, same order
    loader.batch_sampler.set_epoch(1)
    assert torch.cat([b["indexes"] for b in loader]).tolist() != indexes
