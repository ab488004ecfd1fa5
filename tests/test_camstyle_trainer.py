"""StarGAN on the shared trainer: exact resume in the middle of a data pass, checkpoint / sample
sheet / TensorBoard outputs, generators of earlier checkpoints, the projection critic's inputs."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camstyle.config import build_generator, load_generator, model_spec
from camstyle.data import to_image, to_tensor
from camstyle.stargan_step import random_other_cameras
from camstyle.stargan_train import build_stargan_trainer
from uda_reid.config.sections.camstyle import CamStyleConfig
from uda_reid.engine.checkpoint import Checkpointer

NUM_CAMERAS = 3


def small_config(**overrides) -> CamStyleConfig:
    cs = CamStyleConfig(IMAGE_SIZE=(16, 8), G_CONV_DIM=2, D_CONV_DIM=2, G_REPEAT_NUM=1,
                        D_REPEAT_NUM=2, BATCH_SIZE=3, N_CRITIC=2, MAX_ITERS=6, LR_DECAY_ITERS=4,
                        NUM_WORKERS=0, NUM_SAMPLE_IMAGES=2, LOG_PERIOD=1, SAMPLE_PERIOD=2)
    for key, value in overrides.items():
        setattr(cs, key, value)
    return cs


@pytest.fixture
def samples(tmp_path):
    rng = np.random.default_rng(0)
    found = []
    for i in range(8):
        path = tmp_path / f"{i:04d}_c{i % NUM_CAMERAS + 1}.jpg"
        Image.fromarray(rng.integers(0, 255, (24, 12, 3), dtype=np.uint8)).save(path)
        found.append((str(path), i % NUM_CAMERAS))
    return found


def make(cs, samples, out, seed=0):
    return build_stargan_trainer(cs, samples, NUM_CAMERAS, out, identity={"seed": seed},
                                 meta={"dataset": "tiny"}, seed=seed, progress=False)


def test_resume_in_the_middle_of_a_pass_gives_the_uninterrupted_weights(tmp_path, samples):
    # 8 images in batches of 3: a pass is 2 batches; the checkpoint after iteration 3 falls
    # after the first batch of the second pass
    cs = small_config(CHECKPOINT_PERIOD=3)
    straight, _ = make(cs, samples, tmp_path / "a")
    straight.train()

    first, _ = make(cs, samples, tmp_path / "b")
    fetch, calls = first.step.stream.next, []

    def dying():
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        return fetch()

    first.step.stream.next = dying
    with pytest.raises(KeyboardInterrupt):
        first.train()
    torch.manual_seed(123)  # a fresh process: different global RNG until restored
    resumed, checkpointer = make(cs, samples, tmp_path / "b")
    state = checkpointer.load("last.pth")
    assert state["epoch"] == 3
    assert {k: state["step"]["stream"][k] for k in ("passes", "position")} == {
        "passes": 2, "position": 1}
    resumed.load_state_dict(state)
    resumed.train()

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for x, y in zip(straight.optimizers, resumed.optimizers):
        assert x.param_groups[0]["lr"] == y.param_groups[0]["lr"] == pytest.approx(
            cs.G_LR * 1 / 4)  # the last iteration's decayed rate: (6 - 5) / 4


def test_training_writes_checkpoint_sample_sheets_and_tensorboard(tmp_path, samples):
    trainer, _ = make(small_config(CHECKPOINT_PERIOD=4), samples, tmp_path)
    trainer.train()
    sheets = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert sheets == ["iter_0000004.png", "iter_0000006.png"]
    with Image.open(tmp_path / "samples" / sheets[0]) as sheet:
        # 2 rows x (real + 3 cameras) tiles of 16x8 with 2-pixel padding
        assert sheet.size == (4 * (8 + 2) + 2, 2 * (16 + 2) + 2)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert not [p for p in tmp_path.rglob("*.tmp")]
    generator, size, meta = load_generator(tmp_path / "last.pth")
    assert size == (16, 8) and meta["iteration"] == 6 and meta["dataset"] == "tiny"
    assert meta["train_seconds"] > 0 and meta["train_cpu_seconds"] > 0
    assert all(torch.equal(a, b) for a, b in zip(generator.state_dict().values(),
                                                 trainer.model.generator.state_dict().values()))


def test_a_generator_of_the_earlier_loop_still_loads(tmp_path):
    """The StarGAN loop before the shared trainer saved ``model_spec`` and ``trainer``."""
    spec = model_spec(small_config(), NUM_CAMERAS)
    generator = build_generator(spec)
    torch.save({"model_spec": spec, "train_seconds": 2.5, "rng": {},
                "trainer": {"generator": generator.state_dict(), "iteration": 40}},
               tmp_path / "old.pth")
    loaded, size, meta = load_generator(tmp_path / "old.pth")
    assert size == (16, 8) and meta["iteration"] == 40 and meta["train_seconds"] == 2.5
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 generator.state_dict().values()))


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
    Checkpointer(tmp_path, {}).save("ours.pth", {"model": {}, "epoch": 1})
    with pytest.raises(ValueError, match="ours.pth"):
        load_generator(tmp_path / "ours.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_generator(Path(tmp_path / "nope.pth"))


def test_projection_critic_is_told_real_cameras_for_real_images_and_targets_for_fakes(
        tmp_path, samples):
    trainer, _ = make(small_config(D_PROJECTION=True, N_CRITIC=1), samples, tmp_path)
    model, step = trainer.model, trainer.step
    assert model.discriminator.projection
    seen = []
    forward = model.discriminator.forward

    def recording(x, camids=None):
        seen.append((x.detach().clone(), camids.clone()))
        return forward(x, camids)

    model.discriminator.forward = recording
    batch = next(iter(step.stream.loader))
    step.stream.next = lambda: batch
    torch.manual_seed(3)
    step.run(model)
    torch.manual_seed(3)
    targets = random_other_cameras(batch["camids"], NUM_CAMERAS)  # the step's draw, replayed
    # D step: real, translated, interpolates; G step: translated
    assert [len(c) for _, c in seen] == [3, 3, 3, 3]
    assert torch.equal(seen[0][0], batch["images"]) and torch.equal(seen[0][1], batch["camids"])
    for _, cams in seen[1:]:
        assert torch.equal(cams, targets)
