"""The measured check: its retrieval rate against brute force, and that it tells an oracle
camera transfer from a do-nothing one."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from camstyle.evaluate import evaluate_transfer, retrieval_scores

CASTS = torch.tensor([[0.8, -0.8, -0.8], [-0.8, 0.8, -0.8], [-0.8, -0.8, 0.8]])


def test_retrieval_scores_match_a_loop_and_skip_same_id_same_camera():
    torch.manual_seed(0)
    q, g = torch.randn(6, 4), torch.randn(10, 4)
    qp, qc = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 0, 1, 1, 2, 2])
    gp = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    gc = torch.tensor([1, 2, 0, 2, 0, 1, 0, 1, 2, 1])
    hits, aps = 0, []
    for i in range(6):
        kept = [j for j in range(10) if not (gp[j] == qp[i] and gc[j] == qc[i])]
        sims = {j: float(q[i] @ g[j] / (q[i].norm() * g[j].norm())) for j in kept}
        order = sorted(kept, key=lambda j: -sims[j])
        good = [int(gp[j] == qp[i]) for j in order]
        hits += good[0]
        found = np.cumsum(good)
        aps.append(sum(found[r] / (r + 1) for r in range(len(good)) if good[r]) / found[-1])
    scores = retrieval_scores(q, qp, qc, g, gp, gc)
    assert scores["rank1"] == pytest.approx(hits / 6)
    assert scores["mAP"] == pytest.approx(np.mean(aps))
    # the nearest gallery image being a same-id same-camera copy does not count
    q1 = torch.tensor([[1.0, 0.0]])
    g1 = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    scores = retrieval_scores(q1, torch.tensor([5]), torch.tensor([0]), g1,
                              torch.tensor([5, 6, 5]), torch.tensor([0, 1, 1]))
    assert scores == {"rank1": 0.0, "mAP": 0.5}


class CastGenerator(nn.Module):
    """Stand-in generators: ``oracle`` swaps the source cast for the target's and keeps the
    content, ``identity`` returns its input, ``blank`` draws the target cast and nothing else."""

    num_cameras = 3

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.mode = mode

    def forward(self, x: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor
                ) -> torch.Tensor:
        if self.mode == "identity":
            return x
        cast = CASTS[targets][:, :, None, None]
        if self.mode == "blank":
            return cast.expand_as(x) * self.scale
        return (x - x.mean(dim=(2, 3), keepdim=True) + cast).clamp(-1, 1) * self.scale


def write_split(folder, ids, per_cam, rng):
    """Images of identities ``ids`` (two colours each) seen through 3 colour-cast cameras."""
    folder.mkdir(parents=True)
    patterns = {}
    for pid in ids:  # "clothing": one colour offset for the top half, one for the bottom
        top, bottom = np.random.default_rng(pid).uniform(-0.4, 0.4, (2, 1, 1, 3))
        patterns[pid] = np.concatenate([np.repeat(top, 8, 0), np.repeat(bottom, 8, 0)]) \
            .repeat(8, 1)
    samples = []
    for pid in ids:
        for cam in range(3):
            for k in range(per_cam):
                img = patterns[pid] + CASTS[cam].numpy() + rng.normal(0, 0.03, (16, 8, 3))
                img = ((np.clip(img, -1, 1) + 1) * 127.5).astype(np.uint8)
                path = folder / f"{pid:04d}_c{cam + 1}_{k}.png"
                Image.fromarray(img).save(path)
                samples.append((str(path), pid, cam, len(samples)))
    return samples


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root, rng = tmp_path_factory.mktemp("split"), np.random.default_rng(0)
    train = write_split(root / "train", range(1, 7), 2, rng)
    query = write_split(root / "query", range(10, 14), 1, rng)
    gallery = write_split(root / "gallery", range(10, 14), 2, rng)
    return train, query, gallery


@pytest.fixture(scope="module")
def results(splits):
    train, query, gallery = splits
    out = {}
    for mode in ("oracle", "identity", "blank"):
        torch.manual_seed(0)
        out[mode] = evaluate_transfer(CastGenerator(mode), (16, 8), train, query, gallery,
                                      classifier_size=(16, 8), epochs=30, max_queries=12)
    return out


def test_target_camera_rate_separates_transfer_from_doing_nothing(results):
    for result in results.values():
        assert result["camera_classifier"]["real_heldout_accuracy"] > 0.9
        assert result["transfer"]["num_generated"] == 12 * 2
    assert results["oracle"]["transfer"]["target_camera_rate"] > 0.9
    assert results["blank"]["transfer"]["target_camera_rate"] > 0.9
    assert results["identity"]["transfer"]["target_camera_rate"] < 0.1
    assert results["identity"]["transfer"]["source_camera_rate"] > 0.9


def test_identity_rate_drops_when_the_generator_destroys_content(results):
    oracle = results["oracle"]["identity_train_ids"]
    blank = results["blank"]["identity_train_ids"]
    assert oracle["num_generated"] == blank["num_generated"] == 12 * 2
    assert oracle["rank1_real"] > 0.9
    assert oracle["rank1_generated"] > blank["rank1_generated"] + 0.2
    assert results["oracle"]["identity_heldout"]["chance_rank1"] == 0.25


def test_the_reid_embedder_of_a_run_gives_its_trained_models_test_features(tmp_path):
    from uda_reid.config import load_config, save_config
    from uda_reid.data.transforms import build_transforms_from_config
    from uda_reid.models import build_model

    from camstyle.jobs import load_reid_embedder

    cfg = load_config(None, ["MODEL.BACKBONE.NAME", "resnet18", "MODEL.BACKBONE.PRETRAIN",
                             "False", "INPUT.SIZE_TEST", "[32, 16]", "DATASETS.NAMES",
                             "['synth-market']"])
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=5).eval()
    save_config(cfg, tmp_path / "config.yaml")
    torch.save({"model": model.state_dict(), "meta": {"num_classes": 5}}, tmp_path / "last.pth")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8))
              for _ in range(5)]
    embed = load_reid_embedder(tmp_path / "last.pth", "synth-duke", batch_size=2)
    transform = build_transforms_from_config(cfg, is_train=False)
    with torch.no_grad():
        expected = model(torch.stack([transform(img) for img in images]))
    got = embed(images, torch.zeros(5, dtype=torch.long))
    assert got.shape == expected.shape and expected.shape[0] == 5
    assert torch.allclose(got, expected, atol=1e-5)
    (tmp_path / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="EMBEDDING_WEIGHTS.*config.yaml"):
        load_reid_embedder(tmp_path / "last.pth", "synth-duke")
