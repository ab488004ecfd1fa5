"""ECN's ablation cells (source only, +E, +E+C, +E+N, +E+C+N): the ``ecn`` recipe with its target
terms switched, what each switch does to the training step, and the paper's numbers beside
ours in the table."""
from types import SimpleNamespace

import pytest
import torch

from test_camstyle_sampling import styled_target
from test_reproduce import fake_runner
from uda_reid.adapt.base import AdaptContext, StageSettings
from uda_reid.adapt.guard import SourceImages
from uda_reid.adapt.methods.ecn import ECN
from uda_reid.adapt.pipeline import source_key
from uda_reid.data.transforms import build_transforms
from uda_reid.reproduce.references import load_references
from uda_reid.reproduce.runner import ECN_ABLATION, TABLES, cell_config, recipe_of
from uda_reid.reproduce.table import Cell, build_rows, plan_cells, run_cells, table_markdown

# cell -> (target loss on, camera-style images, neighbourhood invariance)
TERMS = {"ecn_source": (False, False, False), "ecn_e": (True, False, False),
         "ecn_ec": (True, True, False), "ecn_en": (True, False, True),
         "ecn_ecn": (True, True, True)}


@pytest.mark.parametrize("pair", [("synth-market", "synth-duke"), ("synth-duke", "synth-market"),
                                  ("dukemtmc", "market1501"), ("market1501", "dukemtmc")])
def test_each_ablation_cell_is_the_ecn_recipe_with_its_terms_switched(pair, tmp_path):
    assert list(TERMS) == list(ECN_ABLATION) == TABLES["ecn_ablation"]["methods"] == \
        TABLES["synthetic_ecn_ablation"]["methods"]
    keys = set()
    for name, (target, camstyle, neighbours) in TERMS.items():
        # a table-wide override does not undo a cell's switch
        cfg = cell_config(Cell(*pair, name, 2), tmp_path / name,
                          ["ADAPT.ECN.CAMSTYLE", str(not camstyle)], tmp_path / "cache")
        method = ECN.from_config(cfg.ADAPT)
        assert recipe_of(name)[0] == cfg.ADAPT.METHOD == "ecn" and cfg.SEED == 2
        assert (method.lam > 0, method.camstyle, method.knn > 0) == (target, camstyle,
                                                                     neighbours), name
        assert method.uses_camstyle == camstyle
        assert (method.lam, method.temperature) == ((0.3 if target else 0.0), 0.05)
        assert cfg.OUTPUT_DIR == str(tmp_path / name)
        keys.add(source_key(cfg))
    assert len(keys) == 1  # every cell of a pair starts from one source model
    assert recipe_of("cluster") == ("cluster", ())


def ecn_step(tmp_path, **switches):
    """The training step ECN builds over a 4-image target with stand-in camera styles."""
    samples, target, order = styled_target(tmp_path)
    transform = build_transforms((32, 16), is_train=False)
    source = SourceImages("s", [s[0] for s in samples], [0, 1, 0, 1], [s[2] for s in samples])
    settings = StageSettings(4, 4, 2, 0, 0, False, "before", transform, transform, None)
    model = SimpleNamespace(head=SimpleNamespace(embedding_dim=4))
    ctx = AdaptContext(model, source, target, settings, torch.device("cpu"), tmp_path)
    return samples, order, target.dataset(transform), ECN(**switches).build_step(ctx)


def drawn_cameras(samples, order, plain, step, epochs=6):
    """(own camera, drawn camera) of every target item the step draws in ``epochs`` epochs;
    an item in its own camera must be the plain image."""
    pairs = []
    for epoch in range(epochs):
        step.begin_epoch(epoch)
        batch = step.streams["target"].next()
        for slot, cam, image in zip(batch["indexes"].tolist(), batch["camids"].tolist(),
                                    batch["images"]):
            own = samples[order[slot]][2]
            pairs.append((own, cam))
            if cam == own:
                assert torch.equal(image, plain[slot]["images"])
    return pairs


def test_with_camera_invariance_off_no_camera_style_image_is_drawn(tmp_path):
    samples, order, plain, step = ecn_step(tmp_path / "off", camstyle=False, knn=0)
    pairs = drawn_cameras(samples, order, plain, step)
    assert len(pairs) == 24 and all(own == cam for own, cam in pairs)
    samples, order, plain, step = ecn_step(tmp_path / "on", camstyle=True, knn=0)
    assert sum(own != cam for own, cam in drawn_cameras(samples, order, plain, step)) > 8


def test_the_source_only_cell_reads_no_target_image(tmp_path):
    _, _, _, step = ecn_step(tmp_path, lam=0.0, camstyle=False)
    assert set(step.streams) == {"source"} and not step.objective.uses_target
    assert set(step.state_dict()) == {"objective", "source"}


def test_the_ablation_table_shows_the_papers_numbers_beside_ours(tmp_path):
    pairs = [("dukemtmc", "market1501"), ("market1501", "dukemtmc")]
    cells = plan_cells(pairs, ECN_ABLATION, seeds=1)
    run_cells(cells, tmp_path, fake_runner([]))
    refs = load_references()
    lines = table_markdown(build_rows(cells, tmp_path, refs), refs).splitlines()

    def row(source, method):
        return next(line for line in lines if line.startswith(f"| {source} ") and
                    f"| {method} |" in line)

    assert "| - / 48.7 | - |" in row("dukemtmc", "ecn_e")  # no published mAP for +E
    assert "| 28.4 / 63.1 | +21.6 |" in row("dukemtmc", "ecn_ec")  # ours: 50.0 mAP
    assert "| 14.8 / 28.9 |" in row("market1501", "ecn_source")
    assert "| 40.4 / 63.3 |" in row("market1501", "ecn_ecn")
