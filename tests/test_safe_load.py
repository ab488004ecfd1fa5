"""Weight files are loaded with ``weights_only=True`` everywhere: a crafted pickle's payload never
runs, and a file that is not a checkpoint is a one-line error naming it."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from camstyle.config import load_generator
from tool_loading import REPO, load_tool
from uda_reid.engine.checkpoint import Checkpointer, load_model_weights, read_checkpoint_meta
from uda_reid.engine.seed import get_rng_states, set_rng_states
from uda_reid.models.weights import load_pretrained
from uda_reid.utils.safe_load import WeightFileError, load_weights_file



class Payload:
    """Unpickling this runs ``exec``: it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def crafted(tmp_path: Path, zip_format: bool) -> Path:
    """A .pth holding a real-looking state dict plus the payload (torch.save's zip format, or
    its legacy non-zip format)."""
    path = tmp_path / ("zip.pth" if zip_format else "legacy.pth")
    obj = {"model": {"weight": torch.ones(2, 2)}, "meta": {"x": Payload(tmp_path / "marker")}}
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path


def loaders(tmp_path: Path):
    """Every entry point that reads a weight file, each as a one-argument function."""
    linear = nn.Linear(2, 2)
    return {
        "read_checkpoint_meta": read_checkpoint_meta,
        "load_model_weights": lambda p: load_model_weights(linear, p),
        "load_pretrained": lambda p: load_pretrained(linear, p, "MODEL.BACKBONE.PRETRAIN_PATH"),
        "checkpointer_resume": lambda p: Checkpointer(Path(p).parent, {}).load(Path(p).name),
        "camstyle_generator": load_generator,
    }


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("entry", ["read_checkpoint_meta", "load_model_weights",
                                   "load_pretrained", "checkpointer_resume",
                                   "camstyle_generator"])
def test_a_crafted_pickle_never_runs_its_payload(tmp_path, zip_format, entry):
    path = crafted(tmp_path, zip_format)
    with pytest.raises(WeightFileError) as info:
        loaders(tmp_path)[entry](path)
    assert not (tmp_path / "marker").exists()
    message = str(info.value)
    assert str(path) in message and "could run code" in message and "\n" not in message
    # the same file loaded the unsafe way does run it: the test's payload is real
    torch.load(path, weights_only=False)
    assert (tmp_path / "marker").read_text() == "ran"


def write_bad_files(tmp_path: Path):
    good = tmp_path / "good.pth"
    torch.save({"model": nn.Linear(2, 2).state_dict()}, good)
    files = {"text": "this is not a checkpoint\n", "empty": "",
             "truncated": good.read_bytes()[: good.stat().st_size // 2]}
    for name, content in files.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return [tmp_path / f"{name}.pth" for name in files]


def test_text_empty_and_truncated_files_are_one_line_errors_naming_them(tmp_path):
    for path in write_bad_files(tmp_path):
        with pytest.raises(WeightFileError) as info:
            load_weights_file(path, "MODEL.WEIGHTS")
        message = str(info.value)
        assert message.startswith(f"MODEL.WEIGHTS: {path} ") and "\n" not in message
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS: file not found"):
        load_weights_file(tmp_path / "absent.pth", "MODEL.WEIGHTS")


def test_test_tool_reports_bad_weight_files_in_one_line_exit_2(tmp_path, capsys):
    tool = load_tool("test")
    config = REPO / "configs" / "synth-market" / "bagtricks_R18.yml"
    bad = [*write_bad_files(tmp_path), crafted(tmp_path, zip_format=True)]
    for path in bad:
        code = tool.main(["--config-file", str(config), "MODEL.WEIGHTS", str(path),
                          "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.DEVICE", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: MODEL.WEIGHTS: ") and str(path) in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "out").exists()  # nothing written before the weights loaded


def test_checkpoints_of_ours_hold_only_weights_only_types(tmp_path):
    """What the trainers save (RNG states included) loads with weights_only=True and restores
    every generator."""
    np.random.seed(3)
    random.seed(3)
    torch.save({"rng": get_rng_states()}, tmp_path / "new.pth")
    want = (np.random.rand(3).tolist(), random.random())
    state = load_weights_file(tmp_path / "new.pth")["rng"]
    assert set(state) >= {"python", "numpy", "torch"}
    np.random.seed(99)
    random.seed(99)
    set_rng_states(state)
    assert (np.random.rand(3).tolist(), random.random()) == want
