"""Output folders are never overwritten by surprise; nothing is written before the set-up checks
pass; every tool takes its options anywhere and reports user errors in one line (exit 2), also
into the run's log.txt."""
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from tool_loading import REPO, load_tool
from uda_reid.config import ConfigError, load_config
from uda_reid.data.datasets import build_dataset
from uda_reid.utils.atomic import atomic_write_json

CONFIG = REPO / "configs" / "synth-market" / "bagtricks_R18.yml"


def snapshot(folder: Path):
    """Every file under ``folder`` -> its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def tiny(data_root, out, *extra):
    return ["--config-file", str(CONFIG), "DATASETS.ROOT", str(data_root),
            "DATASETS.SYNTH_SCALE", "tiny", "DATASETS.TESTS", "[synth-market]",
            "MODEL.DEVICE", "cpu", "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]",
            "MODEL.HEADS.EMBEDDING_DIM", "32", "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH",
            "2", "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "1", "OUTPUT_DIR",
            str(out), *extra]


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    assert load_tool("train").main(tiny(data_root, out)) == 0
    return out


def test_a_second_run_into_a_finished_run_is_refused_and_changes_no_byte(data_root,
                                                                         finished_run, capsys):
    before = snapshot(finished_run)
    assert {"config.yaml", "log.txt", "last.pth", "best.pth", "results.json"} <= \
        {p.name for p in before}
    capsys.readouterr()
    # the same config or another one: refused before any write
    for extra in ([], ["SOLVER.BASE_LR", "0.1"]):
        assert load_tool("train").main(tiny(data_root, finished_run, *extra)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {finished_run} already holds")
        assert "--resume" in err and "--overwrite" in err and "--output-dir" in err
        assert snapshot(finished_run) == before


def test_overwrite_replaces_the_run_and_only_its_files(data_root, finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "notes.md").write_text("mine")
    old_events = sorted(p.name for p in out.glob("events.out.tfevents.*"))
    assert len(old_events) == 1
    assert load_tool("train").main([*tiny(data_root, out, "SOLVER.BASE_LR", "0.001"),
                                    "--overwrite"]) == 0
    assert (out / "notes.md").read_text() == "mine"
    events = sorted(p.name for p in out.glob("events.out.tfevents.*"))
    assert len(events) == 1 and events != old_events  # no stale TensorBoard file beside it
    assert load_config(out / "config.yaml").SOLVER.BASE_LR == 0.001
    log = (out / "log.txt").read_text()
    assert "--overwrite: deleted the previous run's" in log and log.count("Python ") == 1
    assert log.index("=> synth-market") < log.index("Python ")  # set-up lines kept for the log


def test_a_run_killed_before_its_first_checkpoint_is_refused_too(data_root, tmp_path, capsys):
    out = tmp_path / "started"
    out.mkdir()
    (out / "config.yaml").write_text("SEED: 0\n")
    assert load_tool("train").main(tiny(data_root, out)) == 2
    assert "already holds a run (config.yaml)" in capsys.readouterr().err


def test_set_up_errors_write_nothing_and_errors_after_it_reach_log_txt(data_root, finished_run,
                                                                      tmp_path, capsys):
    tool = load_tool("train")
    fresh = tmp_path / "fresh"
    capsys.readouterr()
    # a bad value, an unknown dataset, a missing MODEL.WEIGHTS: one line each, no folder
    for extra, expected in ((["SOLVER.IMS_PER_BATCH", "0"],
                             "error: SOLVER.IMS_PER_BATCH must be positive, got 0\n"),
                            (["DATASETS.NAMES", "[nope]"], "nope"),
                            (["MODEL.WEIGHTS", str(tmp_path / "absent.pth")], "absent.pth")):
        assert tool.main(tiny(data_root, fresh, *extra)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err
        assert not fresh.exists()
    # after the folder is claimed (a resume whose last.pth was truncated), the error is logged
    out = tmp_path / "resumed"
    shutil.copytree(finished_run, out)
    last = out / "last.pth"
    last.write_bytes(last.read_bytes()[:1000])
    assert tool.main([*tiny(data_root, out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"checkpoint: {last}" in err
    assert (out / "log.txt").read_text().rstrip().endswith(err.strip())


def test_os_errors_are_one_line_naming_the_path(data_root, finished_run, tmp_path, capsys):
    tool = load_tool("train")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert tool.main(tiny(data_root, blocker / "run")) == 2  # its parent is not a folder
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(blocker) in err and "Not a directory" in err
    # an unreadable training image of a real-layout dataset
    domain = build_dataset("synth-market", str(data_root), "tiny", 0)
    root = tmp_path / "real"
    shutil.copytree(domain.root, root / "Market-1501-v15.09.15")
    for victim in (root / "Market-1501-v15.09.15" / "bounding_box_train").glob("*.jpg"):
        victim.write_bytes(victim.read_bytes()[:60])  # truncated: the header only
    argv = tiny(root, tmp_path / "out", "DATASETS.NAMES", "[market1501]", "DATASETS.TESTS",
                "[market1501]", "DATALOADER.NUM_WORKERS", "1")  # read in a worker process
    assert tool.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: Cannot read image {root}")


def test_test_tool_keeps_earlier_metrics_unless_overwrite(finished_run, tmp_path, data_root,
                                                          capsys):
    tool = load_tool("test")
    out = tmp_path / "eval"
    argv = [*tiny(data_root, out), "MODEL.WEIGHTS", str(finished_run / "last.pth")]
    assert tool.main(argv) == 0
    first = (out / "test_metrics.json").read_bytes()
    capsys.readouterr()
    assert tool.main(argv) == 2
    assert "holds test results (test_metrics.json)" in capsys.readouterr().err
    assert (out / "test_metrics.json").read_bytes() == first
    assert tool.main([*argv[:2], "--overwrite", *argv[2:]]) == 0


ADAPT_ARGS = ["--source", "synth-market", "--target", "synth-duke", "--method", "ecn",
              "DATASETS.SYNTH_SCALE", "tiny", "MODEL.DEVICE", "cpu",
              "INPUT.SIZE_TRAIN", "(32, 16)", "INPUT.SIZE_TEST", "(32, 16)",
              "MODEL.HEADS.EMBEDDING_DIM", "32", "DATALOADER.NUM_WORKERS", "0",
              "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH",
              "2", "ADAPT.SOLVER.IMS_PER_BATCH", "16", "ADAPT.SOLVER.MAX_EPOCH", "1",
              "ADAPT.SOLVER.ITERS_PER_EPOCH", "2", "ADAPT.ECN.TARGET_IMS_PER_BATCH", "16",
              "TEST.EVAL_PERIOD", "1"]


def test_adapt_set_up_failure_leaves_the_run_resumable(data_root, tmp_path, capsys):
    """ECN with camera styles on and no images, into a finished ECN run's folder with
    --overwrite: it fails before writing anything, and --resume of the original still works.
    The error's generation commands repeat the dataset options the run was given."""
    tool = load_tool("adapt")
    out = tmp_path / "ecn"
    base = [*ADAPT_ARGS, "DATASETS.ROOT", str(data_root),
            "ADAPT.SOURCE_CACHE", str(tmp_path / "cache"), "--output-dir", str(out)]
    assert tool.main([*base, "ADAPT.ECN.CAMSTYLE", "False"]) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert tool.main([*base, "ADAPT.ECN.CAMSTYLE", "True", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "Camera-style images for synth-duke not found" in err
    assert (f"python tools/camstyle.py generate --dataset synth-duke DATASETS.ROOT {data_root} "
            "DATASETS.SYNTH_SCALE tiny") in err
    assert snapshot(out) == before
    assert tool.main([*base, "--method", "direct"]) == 2  # another method: refused as well
    assert snapshot(out) == before
    assert tool.main(["--resume", *base, "ADAPT.ECN.CAMSTYLE", "False"]) == 0
    assert json.loads((out / "results.json").read_text())["method"] == "ecn"


def test_every_tool_reads_options_after_the_overrides(tmp_path, capsys):
    camstyle = load_tool("camstyle")
    args = camstyle.parse_args(["train", "--dataset", "duke", "CAMSTYLE.MAX_ITERS", "20",
                                "--output-dir", "D", "SEED", "3", "--resume"])
    assert (args.command, args.output_dir, args.resume, args.opts) == (
        "train", "D", True, ["CAMSTYLE.MAX_ITERS", "20", "SEED", "3"])
    args = load_tool("adapt").parse_args(["SEED", "1", "--method", "ecn", "--overwrite"])
    assert (args.method, args.overwrite, args.opts) == ("ecn", True, ["SEED", "1"])
    # the same one-line report (exit 2) of a mistyped key, whatever the tool
    for name, argv in (("train", ["--config-file", str(CONFIG), "SOLVER.NOPE", "1", "--resume"]),
                       ("test", ["--config-file", str(CONFIG), "SOLVER.NOPE", "1", "--vis", "1"]),
                       ("adapt", ["SOLVER.NOPE", "1", "--output-dir", str(tmp_path)]),
                       ("camstyle", ["verify", "--dataset", "duke", "SOLVER.NOPE", "1",
                                     "--no-decode"]),
                       ("reproduce", ["SOLVER.NOPE", "1", "--dry-run"])):
        assert load_tool(name).main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "SOLVER.NOPE" in err and "Traceback" not in err
    assert load_tool("benchmark").main(["flops", "--strides", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "stride" in err and err.count("\n") == 1


def test_atomic_files_get_the_umask_permissions(tmp_path):
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        old = os.umask(umask)
        try:
            path = atomic_write_json(tmp_path / f"{umask:o}.json", {"a": 1})
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == mode


def test_a_missing_base_file_names_the_file_that_refers_to_it(tmp_path):
    child = tmp_path / "child.yml"
    child.write_text("_BASE_: Base-missing.yml\nSEED: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    assert str(info.value) == (f"Config file not found: {tmp_path / 'Base-missing.yml'} "
                               f"(_BASE_: Base-missing.yml in {child})")
