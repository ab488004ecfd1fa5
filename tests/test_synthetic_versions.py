"""synth-msmt (MSMT17_V1 layout), domain version 2 and its camera effects, and the colour-shift
check; tiny scale throughout."""
import collections
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from camstyle.colour_shift import camera_mean_colours, colour_shift_rate, shift_colours
from uda_reid.adapt.pipeline import build_adapt_config, default_config_file, source_key
from uda_reid.config.schema import to_dict
from uda_reid.data.datasets import build_dataset
from uda_reid.data.synthetic.domains import (DOMAINS, SCALES, CameraEffects, TimeOfDay,
                                             resolve_version)
from uda_reid.data.synthetic.effects import (colour_response, draw_camera_occluder,
                                             illumination_field, sensor_pattern, view_transform)
from uda_reid.data.synthetic.generate import MANIFEST, _plan, domain_folder, ensure_domain
from uda_reid.reproduce.runner import TABLES
from uda_reid.utils.errors import UnknownNameError


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def test_msmt17_class_reads_synth_msmt_with_the_generators_counts(tmp_path):
    ds = build_dataset("synth-msmt", str(tmp_path), "tiny", 0)
    spec, scale = DOMAINS["synth-msmt"][2], SCALES["tiny"]
    plan = list(_plan(spec, scale, 0))
    splits = collections.Counter(entry[0] for entry in plan)
    num_train, num_test = spec.identities(scale.train_ids), spec.identities(scale.test_ids)
    assert num_train == num_test == 26 > scale.train_ids  # more identities than the others
    assert splits["val"] > 0 and len(ds.train) == splits["train"] + splits["val"]
    assert (len(ds.query), len(ds.gallery)) == (splits["query"], splits["gallery"])
    assert ds.num_train_pids == num_train and ds.num_cameras == 15 == spec.num_cameras
    # MSMT17 numbers test identities from 0 again, in their own folder
    assert sorted({s[1] for s in ds.query + ds.gallery}) == list(range(num_test))
    base = tmp_path / "synth-msmt-tiny-s0-v2" / "MSMT17_V1"
    assert ds.root == str(base)
    listed = sum(len((base / f"list_{s}.txt").read_text().split("\n")) - 1
                 for s in ("train", "val", "query", "gallery"))
    assert listed == len(list(base.rglob("*.jpg"))) == len(plan)
    # the camera and id of a file name agree with the plan's
    plan_cams = collections.Counter((e[0] in ("train", "val"), e[3]) for e in plan)
    read_cams = collections.Counter([(True, s[2]) for s in ds.train]
                                    + [(False, s[2]) for s in ds.query + ds.gallery])
    assert read_cams == plan_cams
    assert Image.open(ds.train[0][0]).size == (scale.width, scale.height)


def test_generation_is_deterministic_per_seed(tmp_path):
    for name in ("synth-msmt", "synth-market"):
        a = ensure_domain(tmp_path / "a", name, "tiny", 0, 2)
        b = ensure_domain(tmp_path / "b", name, "tiny", 0, 2)
        c = ensure_domain(tmp_path / "c", name, "tiny", 1, 2)
        assert files(a) == files(b)
        assert files(a) != files(c)


def test_versions_land_in_different_folders_and_keys(tmp_path):
    v1 = ensure_domain(tmp_path, "synth-market", "tiny", 0, 1)
    v2 = ensure_domain(tmp_path, "synth-market", "tiny", 0, 2)
    assert v1 == tmp_path / "synth-market-tiny-s0" and v2 == tmp_path / "synth-market-tiny-s0-v2"
    assert json.loads((v2 / MANIFEST).read_text())["domain_version"] == 2
    one, two = files(v1), files(v2)
    assert one.keys() == two.keys()  # the same identities and plan, seen by other cameras
    assert all(one[k] != two[k] for k in one if k.suffix == ".jpg")
    # synth-msmt has version 2 only: both settings give the same folder
    assert resolve_version("synth-msmt", 1) == 2
    assert ensure_domain(tmp_path, "synth-msmt", "tiny", 0, 1) == domain_folder(
        tmp_path, "synth-msmt", "tiny", 0, 2)
    with pytest.raises(UnknownNameError, match="SYNTH_VERSION"):
        ensure_domain(tmp_path, "synth-market", "tiny", 0, 3)
    keys = {source_key(build_adapt_config("synth-market", "synth-duke", "ecn",
                                          overrides=["DATASETS.SYNTH_VERSION", str(v)]))
            for v in (1, 2)}
    assert len(keys) == 2  # a version-2 source model never reuses a version-1 cache


def effects(**changes):
    base = dict(spot=(0.5, 0.5, 0.2, 1.0), gradient=(0.0, 0.0), zoom=1.0, offset=(0.0, 0.0),
                shear=0.0, occluder=0, occluder_position=0.5, occluder_prob=1.0,
                occluder_colour=(250, 0, 0), pattern=0.0, saturation=1.0, contrast=1.0)
    return CameraEffects(**{**base, **changes})


def test_illumination_is_a_spatial_field():
    flat = illumination_field(8, 4, effects())
    np.testing.assert_allclose(flat, 1.0, atol=1e-6)
    ramp = illumination_field(9, 4, effects(gradient=(0.5, 0.0)))[..., 0]
    np.testing.assert_allclose(ramp[[0, 4, 8], 0], [0.75, 1.0, 1.25], atol=1e-6)
    spot = illumination_field(16, 16, effects(spot=(0.25, 0.75, 0.1, 2.0)))[..., 1]
    assert spot[4, 11] > 1.9 and spot[15, 0] == pytest.approx(1.0, abs=1e-3)
    time = TimeOfDay("morning", 0.5, (1.0, 1.0, 2.0), 0.0)
    lit = illumination_field(4, 4, effects(), time)
    np.testing.assert_allclose(lit[0, 0], [0.5, 0.5, 1.0], atol=1e-6)


def test_camera_occluder_covers_its_pixels_with_its_probability():
    rng = np.random.default_rng(0)
    image = Image.new("RGB", (16, 32), (0, 0, 0))
    assert draw_camera_occluder(ImageDraw.Draw(image), effects(occluder=1, occluder_position=0.25),
                                rng, 32, 16)
    pixels = np.asarray(image)
    assert (pixels[:, 4] == (250, 0, 0)).all() and (pixels[:, 12:] == 0).all()
    blank = Image.new("RGB", (16, 32), (0, 0, 0))
    assert not draw_camera_occluder(ImageDraw.Draw(blank), effects(occluder=1, occluder_prob=0.0),
                                    rng, 32, 16)
    assert not np.asarray(blank).any()
    sign = Image.new("RGB", (16, 32), (0, 0, 0))
    draw_camera_occluder(ImageDraw.Draw(sign), effects(occluder=3, occluder_position=0.9), rng,
                         32, 16)
    covered = np.asarray(sign).any(-1)
    assert covered[:6, 10:].all() and not covered[:, :9].any() and not covered[8:].any()


def test_view_transform_scales_about_the_feet_and_shifts():
    layer = Image.new("RGBA", (16, 32), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([4, 0, 11, 31], fill=(255, 255, 255, 255))
    half = np.asarray(view_transform(layer, effects(zoom=0.5)))[..., 3] > 127
    rows, cols = np.nonzero(half)
    assert (rows.min(), rows.max()) == (16, 31)  # half as tall, feet on the ground
    assert (cols.min(), cols.max()) == (6, 9)  # half as wide about the centre
    moved = np.asarray(view_transform(layer, effects(offset=(0.0, 0.25))))[..., 3] > 127
    assert np.nonzero(moved)[1].min() == 8


def test_colour_response_and_sensor_pattern():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 4, 3)).astype(np.uint8)
    np.testing.assert_array_equal(colour_response(image, effects()), image)
    grey = colour_response(image, effects(saturation=0.0)).astype(int)
    assert np.abs(grey - grey[..., :1]).max() <= 1
    flat = colour_response(image, effects(contrast=0.0))
    assert flat.max() - flat.min() <= 1
    cam = effects(pattern=10.0)
    a = sensor_pattern(32, 16, cam, (5, 1))
    np.testing.assert_array_equal(a, sensor_pattern(32, 16, cam, (5, 1)))  # fixed per camera
    assert not np.allclose(a, sensor_pattern(32, 16, cam, (5, 2)))
    # row plus column banding: row differences are the same in every column
    np.testing.assert_allclose(a[1:] - a[:-1], (a[1:] - a[:-1])[:, :1].repeat(16, 1), atol=1e-4)
    assert 5.0 < a.std() < 15.0


def test_shift_colours_by_hand():
    means = np.array([[10.0, 20.0, 30.0], [110.0, 20.0, 0.0]])
    image = np.array([[[100, 200, 20]]], dtype=np.uint8)
    np.testing.assert_array_equal(shift_colours(image, means, 0, 1), [[[200, 200, 0]]])
    np.testing.assert_array_equal(shift_colours(image, means, 1, 0), [[[0, 200, 50]]])
    images = [np.full((2, 2, 3), 10.0), np.full((1, 2, 3), 40.0), np.full((2, 1, 3), 5.0)]
    np.testing.assert_allclose(camera_mean_colours(images, [0, 0, 1], 2),
                               [[20.0] * 3, [5.0] * 3])


def _toy_cameras(folder, spatial):
    """Three cameras of 16x8 noise images: a colour cast each, or (``spatial``) the same mean
    colour but a bright bar in a camera's own rows."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(144):
        cam = i % 3
        image = rng.normal(110, 25, (16, 8, 3))
        if spatial:
            image[5 * cam:5 * cam + 4] += 90
            image -= 90 * 4 / 16  # same mean in every camera
        else:
            image += np.roll([45.0, 0.0, -45.0], cam)
        path = folder / f"{i:03d}.png"
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path)
        samples.append((str(path), i, cam, i))
    return samples[:96], samples[96:]


@pytest.mark.parametrize("spatial", [False, True])
def test_colour_shift_moves_colour_cameras_but_not_spatial_ones(tmp_path, spatial):
    train, probes = _toy_cameras(tmp_path, spatial)
    result = colour_shift_rate(train, probes, 3, classifier_size=(16, 8), epochs=25, seed=0)
    assert result["classifier"]["probe_accuracy"] > 0.9
    if spatial:  # the shift leaves the bar where it was: the classifier keeps the source
        assert result["target_camera_rate"] < 0.2 and result["source_camera_rate"] > 0.8
    else:
        assert result["target_camera_rate"] > 0.9


def test_synthetic_table_has_the_four_pairs_with_recipes_from_the_duke_recipe():
    pairs = TABLES["synthetic"]["pairs"]
    assert {"synth-market:synth-msmt", "synth-duke:synth-msmt"} <= set(pairs)
    for pair in pairs:
        source, target = pair.split(":")
        for method in TABLES["synthetic"]["methods"]:
            assert default_config_file(source, target, method) is not None, (pair, method)
    for source, duke_recipe_target in (("synth-market", "synth-duke"),
                                       ("synth-duke", "synth-market")):
        for method in ("direct", "ecn", "cluster", "mlt"):
            msmt = build_adapt_config(source, "synth-msmt", method)
            duke = build_adapt_config(source, duke_recipe_target, method)
            assert source_key(msmt) == source_key(duke)  # one cached source model
            values, reference = to_dict(msmt), to_dict(duke)
            for cfg in (values, reference):
                cfg.pop("OUTPUT_DIR")
                cfg["ADAPT"].pop("TARGET")
            assert values == reference, (source, method)
