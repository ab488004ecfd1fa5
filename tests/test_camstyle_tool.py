"""tools/camstyle.py end to end on a tiny Market-layout fixture: train, resume, generate in two
shards, verify (clean and damaged), evaluate."""
import copy
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from camstyle import jobs
from camstyle.generate import expected_outputs
from camstyle.stargan_step import StarGANStep
from uda_reid.adapt.camstyle_data import CAMSTYLE_DIR

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
MODEL:
  DEVICE: cpu
CAMSTYLE:
  IMAGE_SIZE: [16, 8]
  G_CONV_DIM: 2
  D_CONV_DIM: 2
  G_REPEAT_NUM: 1
  D_REPEAT_NUM: 2
  BATCH_SIZE: 4
  N_CRITIC: 2
  MAX_ITERS: 4
  LR_DECAY_ITERS: 2
  NUM_WORKERS: 0
  CHECKPOINT_PERIOD: 2
  SAMPLE_PERIOD: 2
  EVAL:
    CLASSIFIER_SIZE: [16, 8]
    EPOCHS: 2
"""


def load_tool():
    spec = importlib.util.spec_from_file_location("camstyle_tool", REPO / "tools" / "camstyle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_split(folder: Path, pids, rng):
    folder.mkdir(parents=True)
    samples = []
    for pid in pids:
        for cam in range(3):
            path = folder / f"{pid:04d}_c{cam + 1}s1_000{cam}00_00.jpg"
            Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(path)
            samples.append((str(path), pid, cam, len(samples)))
    return samples


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny"
    dataset = SimpleNamespace(name="tiny", root=str(root), num_cameras=3,
                              train=write_split(root / "bounding_box_train", range(1, 4), rng),
                              query=write_split(root / "query", range(7, 9), rng),
                              gallery=write_split(root / "bounding_box_test", range(7, 9), rng))
    monkeypatch.setattr(jobs, "dataset_cameras", lambda cfg, name: (
        dataset, [(s[0], s[2]) for s in dataset.train], 3))
    config = tmp_path / "tiny.yml"
    config.write_text(CONFIG)
    return dataset, str(config), tmp_path


def assert_complete_and_verified(tool, dataset, base, capsys):
    """The camstyle folder holds exactly the expected files and the verify command says so;
    returns (folder, expected names)."""
    folder = Path(dataset.root) / CAMSTYLE_DIR
    expected = set(expected_outputs([(s[0], s[2]) for s in dataset.train], 3))
    assert {p.name for p in folder.iterdir() if p.is_file()} == expected
    capsys.readouterr()
    assert tool.main(["verify", *base]) == 0
    assert "0 missing, 0 extra, 0 unreadable" in capsys.readouterr().out
    return folder, expected


def test_train_generate_verify_evaluate_through_the_tool(tiny, capsys):
    torch.set_num_threads(1)
    dataset, config, tmp = tiny
    tool = load_tool()
    out = str(tmp / "run")
    base = ["--dataset", "tiny", "--config-file", config, "--quiet"]
    assert tool.main(["train", "--output-dir", out, *base]) == 0
    ckpt = Path(out) / "last.pth"
    assert ckpt.is_file() and (Path(out) / "config.yaml").is_file()
    assert sorted(p.name for p in (Path(out) / "samples").iterdir()) == [
        "iter_0000002.png", "iter_0000004.png"]
    capsys.readouterr()
    assert tool.main(["train", "--output-dir", out, *base]) == 2
    assert "--resume" in capsys.readouterr().err
    assert tool.main(["train", "--output-dir", out, "--resume", *base,
                      "CAMSTYLE.LAMBDA_REC", "3"]) == 2
    assert "CAMSTYLE.LAMBDA_REC" in capsys.readouterr().err

    assert tool.main(["generate", "--checkpoint", str(ckpt), "--shard", "0/2",
                      "--batch-size", "2", *base]) == 0
    # the default checkpoint is OUTPUT_DIR/last.pth
    assert tool.main(["generate", "--shard", "1/2", *base, "OUTPUT_DIR", out]) == 0
    folder, expected = assert_complete_and_verified(tool, dataset, base, capsys)

    victim = folder / sorted(expected)[0]
    intact = victim.read_bytes()
    victim.write_bytes(intact[:100])
    assert tool.main(["verify", *base]) == 1
    assert "1 unreadable" in capsys.readouterr().out
    # generate redoes the truncated file's source image (only it), after which verify is clean
    redone = 0
    for shard in ("0/2", "1/2"):
        assert tool.main(["generate", "--checkpoint", str(ckpt), "--shard", shard, *base]) == 0
        redone += json.loads(capsys.readouterr().out)["generated_images"]
    assert redone == 1 and victim.read_bytes() != intact[:100]
    assert tool.main(["verify", *base]) == 0

    report = tmp / "eval.json"
    assert tool.main(["evaluate", "--checkpoint", str(ckpt), "--output", str(report), *base]) == 0
    result = json.loads(report.read_text())
    assert result["gan_iterations"] == 4 and result["dataset"] == "tiny"
    assert result["transfer"]["num_generated"] == 6 * 2


def as_loop_checkpoint(path: Path, images: int, batch_size: int) -> None:
    """Rewrite the shared trainer's ``last.pth`` at ``path`` as the StarGAN loop before it
    saved its own (camstyle/trainer.py, removed in 365321a): networks and optimisers under
    ``trainer`` (the optimisers hold the decayed LR, no initial one), the stream as the pass
    ``epoch`` and the batches ``offset`` drawn from it (a finished pass stays current until the
    next draw), the RNG states, the clock and the model spec beside them."""
    state = torch.load(path, weights_only=False)
    iteration, per_pass = state["epoch"], images // batch_size
    epoch = (iteration - 1) // per_pass if iteration else 0

    def loop_optimizer(saved):
        saved = copy.deepcopy(saved)
        for group in saved["param_groups"]:
            group.pop("initial_lr")
        return saved

    def part(prefix):
        return {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}

    clock = state["hooks"]["WallClockHook"]
    torch.save({"model_spec": state["meta"]["model_spec"], "dataset": state["meta"]["dataset"],
                "train_seconds": clock["elapsed"], "train_cpu_seconds": clock["cpu_elapsed"],
                "trainer": {"generator": part("generator."),
                            "discriminator": part("discriminator."),
                            "g_optimizer": loop_optimizer(state["step"]["g_optimizer"]),
                            "d_optimizer": loop_optimizer(state["step"]["d_optimizer"]),
                            "iteration": iteration},
                "stream": {"epoch": epoch, "offset": iteration - epoch * per_pass},
                "rng": state["rng"]}, path)


# 9 images in batches of 4: a pass is 2 batches; the LR decays from iteration 1 on
LOOP_RUN = ["CAMSTYLE.MAX_ITERS", "5", "CAMSTYLE.LR_DECAY_ITERS", "4",
            "CAMSTYLE.CHECKPOINT_PERIOD", "1"]


def killed_after(tool, out, base, monkeypatch, iterations):
    """A train run into ``out`` killed after ``iterations`` iterations (each checkpointed)."""
    run = StarGANStep.run

    def killed(self, model):
        if self.iterations == iterations:
            raise KeyboardInterrupt("killed")
        return run(self, model)

    monkeypatch.setattr(StarGANStep, "run", killed)
    with pytest.raises(KeyboardInterrupt):
        tool.main(["train", "--output-dir", str(out), *base])
    monkeypatch.setattr(StarGANStep, "run", run)


@pytest.mark.parametrize("kill", [2, 3])  # at the end of the first pass; inside the second
def test_a_checkpoint_of_the_earlier_loop_resumes_to_the_uninterrupted_run(
        tiny, monkeypatch, kill):
    torch.set_num_threads(1)
    dataset, config, tmp = tiny
    tool = load_tool()
    base = ["--dataset", "tiny", "--config-file", config, "--quiet", *LOOP_RUN]
    assert tool.main(["train", "--output-dir", str(tmp / "straight"), *base]) == 0
    out = tmp / "loop"
    killed_after(tool, out, base, monkeypatch, kill)
    as_loop_checkpoint(out / "last.pth", len(dataset.train), 4)
    loop_seconds = torch.load(out / "last.pth", weights_only=False)["train_seconds"]
    torch.manual_seed(123)  # a fresh process: a different global RNG until restored
    assert tool.main(["train", "--output-dir", str(out), "--resume", *base]) == 0

    straight = torch.load(tmp / "straight" / "last.pth", weights_only=False)
    resumed = torch.load(out / "last.pth", weights_only=False)
    assert resumed["epoch"] == straight["epoch"] == 5 and "identity" in resumed
    assert straight["model"].keys() == resumed["model"].keys()
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    for key in ("g_optimizer", "d_optimizer"):
        a, b = straight["step"][key], resumed["step"][key]
        assert a["param_groups"] == b["param_groups"]
        assert all(torch.equal(a["state"][i]["exp_avg_sq"], b["state"][i]["exp_avg_sq"])
                   for i in a["state"])
    assert resumed["hooks"]["WallClockHook"]["elapsed"] > loop_seconds


def test_a_loop_checkpoint_of_other_networks_is_refused(tiny, monkeypatch, capsys):
    dataset, config, tmp = tiny
    tool = load_tool()
    base = ["--dataset", "tiny", "--config-file", config, "--quiet", *LOOP_RUN]
    out = tmp / "loop"
    killed_after(tool, out, base, monkeypatch, 1)
    as_loop_checkpoint(out / "last.pth", len(dataset.train), 4)
    state = torch.load(out / "last.pth", weights_only=False)
    state["model_spec"]["g_conv_dim"] = 3
    torch.save(state, out / "last.pth")
    capsys.readouterr()
    assert tool.main(["train", "--output-dir", str(out), "--resume", *base]) == 2
    assert "'g_conv_dim': 3" in capsys.readouterr().err


CYCLEGAN = """
  MODEL: cyclegan
  CYCLEGAN:
    LOAD_SIZE: [20, 12]
    CROP_SIZE: [16, 8]
    NGF: 2
    NDF: 2
    G_BLOCKS: 1
    D_LAYERS: 1
    EPOCHS: 1
    DECAY_EPOCHS: 1
    POOL_SIZE: 2
    NUM_WORKERS: 0
"""


def test_cyclegan_pairs_train_in_shards_then_generate_verify_and_evaluate_beside_stargan(
        tiny, capsys):
    torch.set_num_threads(1)
    dataset, config, tmp = tiny
    cyclegan = tmp / "cyclegan.yml"
    cyclegan.write_text(CONFIG.replace("CAMSTYLE:\n", "CAMSTYLE:" + CYCLEGAN, 1))
    tool = load_tool()
    run = tmp / "pairs_run"
    base = ["--dataset", "tiny", "--config-file", str(cyclegan), "--quiet",
            "OUTPUT_DIR", str(run)]
    assert tool.main(["train", "--shard", "1/2", *base]) == 0
    assert sorted(p.name for p in (run / "pairs").iterdir()) == ["c1-c3"]
    capsys.readouterr()
    assert tool.main(["train", "--shard", "1/2", *base]) == 2  # that pair is taken
    assert "--resume" in capsys.readouterr().err
    assert tool.main(["train", "--shard", "0/2", "--resume", *base,
                      "CAMSTYLE.CYCLEGAN.LAMBDA_CYCLE", "3"]) == 2  # shards share the config
    assert "CAMSTYLE.CYCLEGAN.LAMBDA_CYCLE" in capsys.readouterr().err
    assert tool.main(["generate", *base]) == 2  # pairs c1-c2 and c2-c3 are not trained yet
    assert "train it first" in capsys.readouterr().err
    assert tool.main(["generate", "--shard", "0/20", *base]) == 0  # 18 units: nothing to do
    assert json.loads(capsys.readouterr().out)["shard_images"] == 0
    assert tool.main(["train", *base, "CAMSTYLE.MODEL", "cycle"]) == 2
    assert "CAMSTYLE.MODEL must be one of stargan, cyclegan" in capsys.readouterr().err
    assert tool.main(["train", "--shard", "0/2", *base]) == 0
    assert sorted(p.name for p in (run / "pairs").iterdir()) == ["c1-c2", "c1-c3", "c2-c3"]
    summary = json.loads((run / "pairs" / "c1-c2" / "pair_train.json").read_text())
    assert summary["pair"] == [1, 2] and summary["epochs"] == 2
    assert summary["iterations"] == 2 * 3  # 3 images per camera, batch 1

    assert tool.main(["generate", "--shard", "0/2", "--batch-size", "2", *base]) == 0
    assert tool.main(["generate", "--shard", "1/2", *base]) == 0
    assert_complete_and_verified(tool, dataset, base, capsys)

    stargan_run = tmp / "stargan_run"
    assert tool.main(["train", "--output-dir", str(stargan_run), "--dataset", "tiny",
                      "--config-file", config, "--quiet"]) == 0
    report = tmp / "side_by_side.json"
    assert tool.main(["evaluate", "--checkpoint", str(stargan_run / "last.pth"),
                      "--checkpoint", str(run), "--output", str(report), *base]) == 0
    result = json.loads(report.read_text())
    assert [row["model"] for row in result["side_by_side"]] == ["stargan", "cyclegan"]
    stargan, pairs = (result["generators"][str(p)] for p in (stargan_run / "last.pth", run))
    assert pairs["gan_pairs"] == 3 and pairs["gan_epochs_total"] == 6
    assert stargan["gan_iterations"] == 4
    # the same checks: one camera classifier and one embedding for both
    assert stargan["camera_classifier"] == pairs["camera_classifier"]
    assert stargan["identity_heldout"]["rank1_real"] == pairs["identity_heldout"]["rank1_real"]
    assert pairs["transfer"]["num_generated"] == stargan["transfer"]["num_generated"] == 12
