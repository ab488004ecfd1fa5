"""Training loop: exact resume, checkpoint / sample sheet / TensorBoard outputs, batch stream."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camstyle.config import build_trainer, load_generator, model_spec
from camstyle.data import CameraImageDataset, to_image, to_tensor
from camstyle.trainer import (BatchStream, fit, load_checkpoint, random_other_cameras,
                              sample_images)
from uda_reid.config.sections.camstyle import CamStyleConfig

NUM_CAMERAS = 3


def small_config(**overrides) -> CamStyleConfig:
    cs = CamStyleConfig(IMAGE_SIZE=(16, 8), G_CONV_DIM=2, D_CONV_DIM=2, G_REPEAT_NUM=1,
                        D_REPEAT_NUM=2, BATCH_SIZE=3, N_CRITIC=2, MAX_ITERS=6, LR_DECAY_ITERS=4,
                        NUM_WORKERS=0)
    for key, value in overrides.items():
        setattr(cs, key, value)
    return cs


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(8):
        path = tmp_path / f"{i:04d}_c{i % NUM_CAMERAS + 1}.jpg"
        Image.fromarray(rng.integers(0, 255, (24, 12, 3), dtype=np.uint8)).save(path)
        samples.append((str(path), i % NUM_CAMERAS))
    return CameraImageDataset(samples, (16, 8), flip=True)


class DyingStream(BatchStream):
    def __next__(self):
        if self.epoch * 2 + self.offset == 4:
            raise KeyboardInterrupt("killed")
        return super().__next__()


def make(cs, images, seed=0):
    torch.manual_seed(seed)
    trainer = build_trainer(cs, NUM_CAMERAS, "cpu")
    return trainer, BatchStream(images, cs.BATCH_SIZE, seed=seed)


def run_fit(trainer, stream, out, images, cs):
    extra = {"model_spec": model_spec(cs, NUM_CAMERAS)}
    return fit(trainer, stream, out, sample_batch=sample_images(images, 2), log_period=1,
               sample_period=2, checkpoint_period=cs.CHECKPOINT_PERIOD, extra_state=extra,
               progress=False)


def test_resume_after_interruption_gives_same_weights_as_uninterrupted_run(tmp_path, images):
    cs = small_config(CHECKPOINT_PERIOD=3)
    straight, stream = make(cs, images)
    run_fit(straight, stream, tmp_path / "a", images, cs)

    first, stream = make(cs, images)
    stream.__class__ = DyingStream  # killed while fetching the 5th batch (after checkpoint 3)
    with pytest.raises(KeyboardInterrupt):
        run_fit(first, stream, tmp_path / "b", images, cs)
    assert first.iteration == 4
    torch.manual_seed(123)  # a fresh process: different global RNG until restored
    resumed, stream = make(cs, images, seed=0)
    load_checkpoint(resumed, stream, tmp_path / "b" / "last.pth")
    assert resumed.iteration == 3 and stream.state_dict() == {"epoch": 1, "offset": 1}
    run_fit(resumed, stream, tmp_path / "b", images, cs)

    for name in ("generator", "discriminator"):
        a = getattr(straight, name).state_dict()
        b = getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert straight.g_optimizer.param_groups[0]["lr"] == resumed.g_optimizer.param_groups[0]["lr"]


def test_fit_writes_checkpoint_sample_sheets_and_tensorboard(tmp_path, images):
    cs = small_config(CHECKPOINT_PERIOD=4)
    trainer, stream = make(cs, images)
    summary = run_fit(trainer, stream, tmp_path, images, cs)
    assert summary["iterations"] == 6 and summary["train_seconds"] > 0
    sheets = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert sheets == ["iter_0000004.png", "iter_0000006.png"]
    with Image.open(tmp_path / "samples" / sheets[0]) as sheet:
        # 2 rows x (real + 3 cameras) tiles of 16x8 with 2-pixel padding
        assert sheet.size == (4 * (8 + 2) + 2, 2 * (16 + 2) + 2)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert not [p for p in tmp_path.rglob("*.tmp")]
    generator, size, meta = load_generator(tmp_path / "last.pth")
    assert size == (16, 8) and meta["train_seconds"] == pytest.approx(summary["train_seconds"])
    assert all(torch.equal(a, b) for a, b in zip(generator.state_dict().values(),
                                                 trainer.generator.state_dict().values()))


def test_batch_stream_restarts_at_the_same_batch(images):
    stream = BatchStream(images, 3, seed=5)
    for _ in range(3):
        next(stream)
    state = stream.state_dict()
    expected = [next(stream)[1].tolist() for _ in range(3)]
    again = BatchStream(images, 3, seed=5)
    again.load_state_dict(state)
    assert [next(again)[1].tolist() for _ in range(3)] == expected
    with pytest.raises(ValueError, match="BATCH_SIZE"):
        BatchStream(images, 9)


def test_image_tensor_round_trip_and_range(tmp_path):
    array = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(4, 2, 3) * 10
    tensor = to_tensor(Image.fromarray(array), (4, 2))
    assert tensor.shape == (3, 4, 2) and tensor.min() >= -1 and tensor.max() <= 1
    assert np.array_equal(np.asarray(to_image(tensor)), array)


def test_load_generator_names_the_bad_file(tmp_path):
    bad = tmp_path / "x.pth"
    torch.save({"something": 1}, bad)
    with pytest.raises(ValueError, match=str(bad)):
        load_generator(bad)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_generator(Path(tmp_path / "nope.pth"))


def test_projection_critic_is_told_real_cameras_for_real_images_and_targets_for_fakes(images):
    trainer, stream = make(small_config(D_PROJECTION=True, N_CRITIC=1), images)
    assert trainer.discriminator.projection
    seen = []
    forward = trainer.discriminator.forward

    def recording(x, camids=None):
        seen.append((x.detach().clone(), camids.clone()))
        return forward(x, camids)

    trainer.discriminator.forward = recording
    real, camids = next(stream)
    torch.manual_seed(3)
    trainer.step(real, camids)
    torch.manual_seed(3)
    targets = random_other_cameras(camids, NUM_CAMERAS)  # the step's draw, replayed
    # D step: real, translated, interpolates; G step: translated
    assert [len(c) for _, c in seen] == [3, 3, 3, 3]
    assert torch.equal(seen[0][0], real) and torch.equal(seen[0][1], camids)
    for _, cams in seen[1:]:
        assert torch.equal(cams, targets)
