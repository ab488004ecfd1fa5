"""Generation jobs: names, sizes, restart after a crash, shards, manifest; verify."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camstyle.generate as gen
from camstyle.cyclegan_model import ResnetGenerator
from camstyle.cyclegan_train import camera_pairs
from camstyle.generate import (Manifest, expected_outputs, generate_pair_shard, generate_shard,
                               manifest_path, pair_units, parse_shard, shard_samples, unit_pairs)
from camstyle.model import Generator
from camstyle.translators import PairTranslator
from camstyle.verify import verify_folder
from uda_reid.adapt.camstyle_data import fake_name

NUM_CAMERAS = 3
SIZE = (16, 8)  # generator input (H, W)


def write_images(folder: Path, count: int = 7):
    """Market-style training images of varying sizes; returns (path, 0-based camid)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        cam = i % NUM_CAMERAS
        path = folder / f"{i // 2 + 1:04d}_c{cam + 1}s1_{i:06d}_00.jpg"
        w, h = 20 + i, 40 + 2 * i
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        samples.append((str(path), cam))
    return samples


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    samples = write_images(tmp_path / "bounding_box_train")
    generator = Generator(NUM_CAMERAS, conv_dim=2, repeat_num=1)
    return samples, generator, tmp_path / "bounding_box_train_camstyle"


def files(folder: Path):
    return {p.name for p in folder.iterdir() if p.is_file()}


def pair_translator(num_cameras=NUM_CAMERAS):
    """CycleGAN generators for every direction of every camera pair (tiny, seeded)."""
    torch.manual_seed(0)
    return PairTranslator({d: ResnetGenerator(ngf=2, blocks=1, dropout=False)
                           for a, b in camera_pairs(num_cameras) for d in ((a, b), (b, a))},
                          num_cameras)


def run(generator, samples, out, shard=(0, 1), batch_size=2):
    return generate_shard(generator, samples, out, image_size=SIZE, shard=shard,
                          batch_size=batch_size, progress=False)


def run_pairs(translator, samples, out, shard=(0, 1), batch_size=2):
    return generate_pair_shard(translator, samples, out, image_size=SIZE, shard=shard,
                               batch_size=batch_size, progress=False)


def test_pair_job_writes_the_same_file_set_each_file_from_its_pairs_generator(setup):
    samples, _, out = setup
    translator = pair_translator()
    stats = run_pairs(translator, samples, out)
    assert files(out) == set(expected_outputs(samples, NUM_CAMERAS))
    assert stats["written_files"] == stats["generated_images"] == len(samples) * 2
    path, cam = samples[0]
    source = Image.open(path).convert("RGB")

    def rendered(direction):
        with torch.no_grad():
            fake = translator.directions[direction](gen.to_tensor(source, SIZE)[None])[0]
        return np.asarray(gen.to_image(fake, source.size), dtype=np.float32)

    for target in (1, 2):
        got = np.asarray(Image.open(out / fake_name(Path(path).stem, cam, target)),
                         dtype=np.float32)
        errors = {d: np.abs(got - rendered(d)).mean() for d in translator.directions}
        # the file is its own direction's output (up to JPEG), far from every other generator's
        others = min(e for d, e in errors.items() if d != f"{cam}_{target}")
        assert errors[f"{cam}_{target}"] < 0.5 * others
    assert verify_folder(samples, out, NUM_CAMERAS).ok


def test_pair_shards_are_contiguous_blocks_of_pair_units(setup):
    samples = setup[0]
    shards = [pair_units(samples, NUM_CAMERAS, i, 3) for i in range(3)]
    keys = [u[0] for shard in shards for u in shard]
    assert sorted(keys) == sorted(expected_outputs(samples, NUM_CAMERAS))
    assert sorted(len(s) for s in shards) == [4, 5, 5]
    # units are listed pair by pair, so each shard needs the generators of few pairs
    assert [unit_pairs(s) for s in shards] == [[(0, 1)], [(0, 1), (0, 2)], [(0, 2), (1, 2)]]


def test_fake_names_use_one_based_cameras_and_cover_every_other_camera():
    assert fake_name("0001_c1s1_000015_00", 0, 5) == "0001_c1s1_000015_00_fake_1to6.jpg"
    names = expected_outputs([("/x/a.jpg", 1), ("/y/b.jpg", 0)], 3)
    assert names == {"a_fake_2to1.jpg": ("/x/a.jpg", 0), "a_fake_2to3.jpg": ("/x/a.jpg", 2),
                     "b_fake_1to2.jpg": ("/y/b.jpg", 1), "b_fake_1to3.jpg": ("/y/b.jpg", 2)}
    with pytest.raises(ValueError, match="share the stem"):
        expected_outputs([("/x/a.jpg", 0), ("/y/a.jpg", 1)], 2)


def test_generated_files_are_the_expected_set_at_source_size(setup):
    samples, generator, out = setup
    stats = run(generator, samples, out)
    assert files(out) == set(expected_outputs(samples, NUM_CAMERAS))
    assert stats["written_files"] == len(samples) * (NUM_CAMERAS - 1)
    for name, (source, _) in expected_outputs(samples, NUM_CAMERAS).items():
        with Image.open(out / name) as fake, Image.open(source) as real:
            assert fake.size == real.size and fake.format == "JPEG"
    assert verify_folder(samples, out, NUM_CAMERAS).ok


def test_output_depends_on_target_camera_and_matches_generator(setup):
    samples, generator, out = setup
    run(generator, samples, out)
    path, cam = samples[0]
    stem = Path(path).stem
    arrays = [np.asarray(Image.open(out / fake_name(stem, cam, t)), dtype=np.float32)
              for t in range(NUM_CAMERAS) if t != cam]
    assert np.abs(arrays[0] - arrays[1]).mean() > 1.0


def test_job_killed_midway_then_restarted_ends_with_exact_file_set(setup, monkeypatch):
    samples, generator, out = setup
    real_write, calls = gen._write_jpeg, []

    def crashing_write(image, path, quality):
        if len(calls) == 5:  # the 6th file: half-written temporary, then the process dies
            stale = path.parent / f".{path.name}.abcd1234.tmp"
            stale.write_bytes(b"\xff\xd8\xff partial")
            raise KeyboardInterrupt("killed")
        calls.append(path.name)
        real_write(image, path, quality)

    monkeypatch.setattr(gen, "_write_jpeg", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        run(generator, samples, out, batch_size=2)
    # the first batch (2 images, 4 files) finished; the second died after 1 of its files
    assert len(Manifest(manifest_path(out, 0, 1))) == 2
    assert len(calls) == 5 and any(n.endswith(".tmp") for n in files(out))

    monkeypatch.setattr(gen, "_write_jpeg", real_write)
    stats = run(generator, samples, out, batch_size=2)
    assert files(out) == set(expected_outputs(samples, NUM_CAMERAS))  # no temp, no partial
    assert stats["removed_temporaries"] == 1
    assert stats["skipped_images"] == 2 and stats["generated_images"] == len(samples) - 2
    assert len(Manifest(manifest_path(out, 0, 1))) == len(samples)
    assert verify_folder(samples, out, NUM_CAMERAS).ok


def test_restart_skips_finished_images_and_redoes_vanished_files(setup, monkeypatch):
    samples, generator, out = setup
    run(generator, samples, out, batch_size=3)
    victim = sorted(files(out))[0]
    (out / victim).unlink()
    stats = run(generator, samples, out, batch_size=3)
    assert stats["generated_images"] == 1 and stats["skipped_images"] == len(samples) - 1
    assert files(out) == set(expected_outputs(samples, NUM_CAMERAS))
    assert run(generator, samples, out)["generated_images"] == 0


def test_torn_manifest_line_is_ignored_and_next_append_starts_clean(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a\nb\nhalf-wri")
    manifest = Manifest(path)
    assert "a" in manifest and "b" in manifest and "half-wri" not in manifest
    manifest.add(["c"])
    assert path.read_text() == "a\nb\nc\n"


def test_two_shards_are_disjoint_and_their_union_is_the_whole(setup):
    samples, generator, out = setup
    run(generator, samples, out.parent / "s0", shard=(0, 2))
    run(generator, samples, out.parent / "s1", shard=(1, 2))
    first, second = files(out.parent / "s0"), files(out.parent / "s1")
    assert first and second and not first & second
    assert first | second == set(expected_outputs(samples, NUM_CAMERAS))
    # the same shards in one shared folder complete the job and verify cleanly
    run(generator, samples, out, shard=(1, 2))
    run(generator, samples, out, shard=(0, 2))
    assert verify_folder(samples, out, NUM_CAMERAS).ok
    sizes = [len(shard_samples(samples, i, 3)) for i in range(3)]
    assert sorted(sizes) == [2, 2, 3]
    assert shard_samples(samples, 0, 2) == shard_samples(list(reversed(samples)), 0, 2)


@pytest.mark.parametrize("text", ["2/2", "1", "-1/3", "a/b", "1/0"])
def test_parse_shard_rejects_bad_specs(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)
    assert parse_shard(" 1 / 4 ") == (1, 4)


def test_verify_reports_truncated_extra_and_missing_files(setup):
    samples, generator, out = setup
    run(generator, samples, out)
    names = sorted(expected_outputs(samples, NUM_CAMERAS))
    truncated = out / names[0]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    (out / names[1]).unlink()
    (out / "stray_fake_1to2.jpg").write_bytes(data)
    (out / f".{names[2]}.zz99.tmp").write_bytes(b"x")
    report = verify_folder(samples, out, NUM_CAMERAS)
    assert not report.ok
    assert report.unreadable == [names[0]]
    assert report.missing == [names[1]]
    assert report.extra == sorted(["stray_fake_1to2.jpg", f".{names[2]}.zz99.tmp"])
    assert "1 missing, 2 extra, 1 unreadable" in report.summary()


def test_verify_on_missing_folder_lists_everything_missing(tmp_path):
    report = verify_folder([("/a/x.jpg", 0)], tmp_path / "nope", 2)
    assert report.missing == ["x_fake_1to2.jpg"] and not report.ok


KILLED_WORKER = """
import json, sys, time
import torch
import camstyle.generate as gen
from camstyle.model import Generator
sys.path.insert(0, sys.argv[5])
from test_camstyle_generate import pair_translator

real_write = gen._write_jpeg
def slow_write(image, path, quality):
    real_write(image, path, quality)
    time.sleep(0.05)
gen._write_jpeg = slow_write
samples = [tuple(s) for s in json.load(open(sys.argv[2]))]
if sys.argv[4] == "stargan":
    generator = Generator(3, conv_dim=2, repeat_num=1)
    job = gen.generate_shard
else:
    generator, job = pair_translator(), gen.generate_pair_shard
generator.load_state_dict(torch.load(sys.argv[1]))
job(generator, samples, sys.argv[3], image_size=(16, 8), batch_size=1, progress=False)
"""


@pytest.mark.parametrize("kind", ["stargan", "cyclegan"])
def test_worker_killed_with_sigkill_then_rerun_completes_exactly(setup, tmp_path, kind):
    samples, generator, out = setup
    if kind == "cyclegan":
        generator = pair_translator()
    torch.save(generator.state_dict(), tmp_path / "g.pth")
    (tmp_path / "samples.json").write_text(json.dumps(samples))
    env = dict(os.environ, PYTHONPATH=str(Path(gen.__file__).resolve().parents[1]),
               OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(tmp_path / "g.pth"),
                             str(tmp_path / "samples.json"), str(out), kind,
                             str(Path(__file__).resolve().parent)], env=env)
    manifest = manifest_path(out, 0, 1, "shard" if kind == "stargan" else "pairs")
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the worker finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(files(out)) < len(expected_outputs(samples, NUM_CAMERAS))

    stats = (run if kind == "stargan" else run_pairs)(generator, samples, out, batch_size=1)
    assert stats["skipped_images"] >= 2
    assert files(out) == set(expected_outputs(samples, NUM_CAMERAS))
    assert verify_folder(samples, out, NUM_CAMERAS).ok
