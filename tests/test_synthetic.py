"""Synthetic domains: deterministic, cached, rebuilt after interruption, parsed back."""
import json
import multiprocessing

import numpy as np
from PIL import Image

from uda_reid.data.datasets import build_dataset
from uda_reid.data.synthetic.domains import SCALES
from uda_reid.data.synthetic.generate import MANIFEST, ensure_domain, manifest_ok


def file_bytes(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*.jpg"))}


def test_generation_is_deterministic_per_seed_and_differs_across_seeds(tmp_path):
    a = ensure_domain(tmp_path / "a", "synth-market", "tiny", 0)
    b = ensure_domain(tmp_path / "b", "synth-market", "tiny", 0)
    c = ensure_domain(tmp_path / "c", "synth-market", "tiny", 1)
    assert file_bytes(a) == file_bytes(b)
    assert file_bytes(a) != file_bytes(c)


def test_cached_domain_is_not_regenerated(tmp_path):
    folder = ensure_domain(tmp_path, "synth-duke", "tiny", 0)
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*.jpg")}
    assert ensure_domain(tmp_path, "synth-duke", "tiny", 0) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.jpg")} == mtimes


def test_interrupted_generation_is_detected_and_rebuilt(tmp_path):
    folder = ensure_domain(tmp_path, "synth-market", "tiny", 0)
    reference = file_bytes(folder)
    victim = sorted(folder.rglob("*.jpg"))[3]
    victim.write_bytes(victim.read_bytes()[:50])  # a truncated file
    ensure_domain(tmp_path, "synth-market", "tiny", 0)
    assert file_bytes(folder) == reference
    (folder / MANIFEST).unlink()  # an older layout of the cache without a manifest
    extra = victim.parent / "0999_c1s1_000001_01.jpg"
    extra.write_bytes(b"partial")
    killed = tmp_path / ".synth-market-tiny-s0.tmp" / "Market-1501-v15.09.15" / "query"
    killed.mkdir(parents=True)  # a generation killed half-way through its private folder
    (killed / "0001_c1s1_000001_01.jpg").write_bytes(b"partial")
    ensure_domain(tmp_path, "synth-market", "tiny", 0)
    assert file_bytes(folder) == reference and not extra.exists()
    assert not (tmp_path / ".synth-market-tiny-s0.tmp").exists()
    assert json.loads((folder / MANIFEST).read_text())["scale"] == "tiny"


def test_repair_rebuilds_only_generated_files_and_keeps_the_users(tmp_path):
    folder = ensure_domain(tmp_path, "synth-market", "tiny", 0)
    reference = file_bytes(folder)
    layout = folder / "Market-1501-v15.09.15"
    camstyle = layout / "bounding_box_train_camstyle"  # written by tools/camstyle.py generate
    camstyle.mkdir()
    mine = {camstyle / "0001_c1s1_000001_01_fake_1to2.jpg": b"user image",
            camstyle / ".manifest" / "shard-0-of-1.txt": b"0001_c1s1_000001_01\n",
            folder / "notes.txt": b"kept"}
    for path, data in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    victim = sorted((layout / "bounding_box_train").glob("*.jpg"))[2]
    victim.write_bytes(victim.read_bytes()[:40])  # one damaged generated image
    assert not manifest_ok(folder)
    ensure_domain(tmp_path, "synth-market", "tiny", 0)
    assert manifest_ok(folder, checksums=True)
    assert {p: p.read_bytes() for p in mine} == mine
    assert {k: v for k, v in file_bytes(folder).items()
            if "camstyle" not in str(k)} == reference  # the damaged image is repaired


def test_same_size_corruption_is_caught_by_checksums_and_rebuilt(tmp_path):
    folder = ensure_domain(tmp_path, "synth-duke", "tiny", 0)
    reference = file_bytes(folder)
    victim = sorted(folder.rglob("*.jpg"))[5]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert manifest_ok(folder) and not manifest_ok(folder, checksums=True)
    ensure_domain(tmp_path, "synth-duke", "tiny", 0, verify_checksums=True)
    assert file_bytes(folder) == reference


def _generate(root):
    ensure_domain(root, "synth-market", "tiny", 2)


def test_concurrent_requests_generate_one_complete_copy(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_generate, args=(tmp_path,)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    folder = tmp_path / "synth-market-tiny-s2"
    assert manifest_ok(folder, checksums=True)
    assert file_bytes(folder) == file_bytes(ensure_domain(tmp_path / "ref", "synth-market",
                                                          "tiny", 2))


def test_parsed_back_by_real_parsers_with_expected_counts(tmp_path):
    scale = SCALES["tiny"]
    market = build_dataset("synth-market", str(tmp_path), "tiny", 0)
    duke = build_dataset("synth-duke", str(tmp_path), "tiny", 0)
    for ds, cams in ((market, 6), (duke, 8)):
        assert ds.num_train_pids == scale.train_ids
        assert len({s[1] for s in ds.query}) == scale.test_ids
        assert not {s[1] for s in ds.query} & {s[1] for s in ds.train}
        assert max(s[2] for s in ds.train + ds.query + ds.gallery) < cams
        low, high = scale.cameras_per_id[0] * scale.images_per_camera[0], \
            scale.cameras_per_id[1] * scale.images_per_camera[1]
        assert low * scale.train_ids <= len(ds.train) <= high * scale.train_ids
        # every query has a gallery match from another camera
        gallery = {(s[1], s[2]) for s in ds.gallery}
        assert all(any(p == q[1] and c != q[2] for p, c in gallery) for q in ds.query)
    assert sum(1 for s in market.gallery if s[1] == 0) == scale.distractors
    assert "Market-1501-v15.09.15" in market.root and "DukeMTMC-reID" in duke.root
    img = Image.open(market.train[0][0])
    assert img.size == (scale.width, scale.height)


def test_domains_differ_in_colour_statistics(tmp_path):
    def mean_saturation(ds):
        hsv = [np.asarray(Image.open(s[0]).convert("HSV"), dtype=float) for s in ds.train]
        return np.mean([h[..., 1].mean() for h in hsv]), np.mean([h[..., 2].mean() for h in hsv])

    m_sat, m_val = mean_saturation(build_dataset("synth-market", str(tmp_path), "tiny", 0))
    d_sat, d_val = mean_saturation(build_dataset("synth-duke", str(tmp_path), "tiny", 0))
    assert m_val > d_val + 10  # the duke-like domain is darker
