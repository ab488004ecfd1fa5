"""ONNX / TorchScript export of the test-time feature path: features equal PyTorch's, the batch
axis stays dynamic, the tool prints the parity check on a test set."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from uda_reid.config import load_config
from uda_reid.engine.evaluate import evaluate_dataset
from uda_reid.export import (OnnxRuntimeFeatures, RetrievalFeatures, check_exportable,
                             export_onnx, export_torchscript, load_torchscript)
from uda_reid.export.formats import example_images
from uda_reid.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SMALL_CNN = ["MODEL.BACKBONE.NAME", "resnet18", "MODEL.DEVICE", "cpu",
             "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]"]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def trained_like(model):
    """Non-trivial BatchNorm statistics, so eval mode differs visibly from train mode."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d) or isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model


def reference_features(model, images, flip):
    """The evaluation's definition: eval-mode embedding, optionally averaged with the mirror's."""
    model.eval()
    with torch.no_grad():
        feats = model(images)
        if flip:
            feats = (feats + model(torch.flip(images, dims=[3]))) / 2
    return feats


@pytest.fixture(scope="module")
def cnn():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return trained_like(build_model(load_config(None, SMALL_CNN), 4))


def test_onnx_features_match_pytorch_for_any_batch_size(cnn, tmp_path):
    path = export_onnx(RetrievalFeatures(cnn, flip=True), example_images((32, 16)),
                       tmp_path / "m.onnx")
    graph = onnx.load(str(path)).graph
    assert graph.input[0].name == "images" and graph.output[0].name == "features"
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    runner = OnnxRuntimeFeatures(path)
    for batch in (1, 5):
        images = torch.randn(batch, 3, 32, 16)
        expected = reference_features(cnn, images, flip=True)
        got = runner(images)
        assert got.shape == expected.shape == (batch, 512)
        assert (got - expected).abs().max().item() < 1e-4


def test_torchscript_features_match_pytorch(cnn, tmp_path):
    path = export_torchscript(RetrievalFeatures(cnn), example_images((32, 16)),
                              tmp_path / "m.pt")
    scripted = load_torchscript(path)
    images = torch.randn(3, 3, 32, 16)
    expected = reference_features(cnn, images, flip=False)
    assert (scripted(images) - expected).abs().max().item() < 1e-4


def test_export_leaves_the_callers_model_in_its_mode(cnn):
    cnn.train()
    RetrievalFeatures(cnn)
    assert cnn.training
    cnn.eval()


def vit_cfg(*pairs):
    return load_config(ROOT / "configs" / "transreid" / "synth-market_vit_tiny.yml",
                       ["INPUT.SIZE_TRAIN", "[32, 32]", "INPUT.SIZE_TEST", "[32, 32]",
                        "MODEL.TRANSREID.NUM_CAMERAS", "3", *map(str, pairs)])


def test_vit_with_jpm_exports_to_torchscript_and_sie_cameras_are_refused_clearly(tmp_path):
    from uda_reid.models.forward import side_info_domain

    model = build_model(vit_cfg("MODEL.TRANSREID.SIE_CAMERA", "False"), 4).eval()
    assert model.backbone.jpm
    path = export_torchscript(RetrievalFeatures(model), example_images((32, 32)),
                              tmp_path / "vit.pt")
    images = torch.randn(3, 3, 32, 32)
    got = load_torchscript(path)(images)
    assert (got - reference_features(model, images, flip=False)).abs().max().item() < 1e-4

    sie = build_model(vit_cfg("MODEL.TRANSREID.SIE_CAMERA", "True"), 4).eval()
    with pytest.raises(ValueError, match="SIE_CAMERA reads camera ids"):
        check_exportable(sie)
    with side_info_domain(sie, "target"):  # policy 'mean': no camera ids needed
        check_exportable(sie)


def write_custom_dataset(root: Path) -> None:
    """4 ids x 3 images of random colours (with cameras), as list files."""
    rng = np.random.default_rng(0)
    lines = []
    for pid in range(4):
        for k in range(3):
            name = f"img/{pid}_{k}.jpg"
            (root / "img").mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name)
            lines.append(f"{name} {pid} {k}")
    (root / "all.txt").write_text("\n".join(lines) + "\n")


def test_export_tool_prints_feature_difference_and_metrics_of_both(cnn, tmp_path, capsys):
    write_custom_dataset(tmp_path / "data")
    weights = tmp_path / "model.pth"
    torch.save({"model": cnn.state_dict(), "meta": {"num_classes": 4}}, weights)
    overrides = [*SMALL_CNN, "MODEL.WEIGHTS", str(weights), "DATASETS.ROOT",
                 str(tmp_path / "data"), "DATASETS.NAMES", "[custom]", "DATASETS.TESTS",
                 "[custom]", "DATASETS.CUSTOM.TRAIN", "all.txt", "DATASETS.CUSTOM.QUERY",
                 "all.txt", "DATASETS.CUSTOM.GALLERY", "all.txt", "TEST.FLIP", "True",
                 "TEST.IMS_PER_BATCH", "5", "DATALOADER.NUM_WORKERS", "0",
                 "OUTPUT_DIR", str(tmp_path / "out")]
    status = load_tool("export")(["--config-file", "", *overrides])
    printed = capsys.readouterr().out
    assert status == 0, printed
    report = json.loads((tmp_path / "out" / "export" / "export_report.json").read_text())
    parity = report["parity"]
    # the PyTorch numbers are the evaluation's own
    expected = evaluate_dataset(load_config(None, overrides), cnn, "custom", torch.device("cpu"))
    assert parity["pytorch"]["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
    assert parity["pytorch"]["rank1"] == pytest.approx(expected["rank1"], abs=1e-12)
    for fmt in ("onnx", "torchscript"):
        assert parity[fmt]["max_abs_diff"] < 1e-4
        assert parity[fmt]["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
        row = next(line for line in printed.splitlines() if line.split()[:1] == [fmt])
        assert f"{parity[fmt]['max_abs_diff']:.2e}" in row
        assert f"{100 * parity[fmt]['mAP']:.2f}" in row
    assert "Parity on custom (24 images)" in printed
    assert Path(report["files"]["onnx"]).is_file()
    assert report["input"]["shape"] == ["batch", 3, 32, 16]
