"""CamStyle configs: every file loads, builds valid networks, and the base file is StarGAN's."""
from pathlib import Path

import pytest

from camstyle.config import build_discriminator, model_spec
from camstyle.cyclegan_model import patch_map_size
from camstyle.cyclegan_train import camera_pairs
from uda_reid.config import load_config
from uda_reid.config.sections.camstyle import CamStyleConfig, CycleGANConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "camstyle"


def test_base_config_states_the_stargan_defaults():
    cs = load_config(CONFIGS / "Base-CamStyle.yml").CAMSTYLE
    assert cs == CamStyleConfig()
    assert (cs.LAMBDA_CLS, cs.LAMBDA_REC, cs.LAMBDA_GP) == (1.0, 10.0, 10.0)
    assert (cs.G_LR, cs.D_LR, cs.BETAS, cs.N_CRITIC) == (1e-4, 1e-4, (0.5, 0.999), 5)
    assert (cs.G_CONV_DIM, cs.D_CONV_DIM, cs.G_REPEAT_NUM, cs.D_REPEAT_NUM) == (64, 64, 6, 6)
    assert (cs.BATCH_SIZE, cs.MAX_ITERS, cs.LR_DECAY_ITERS) == (16, 200000, 100000)


@pytest.mark.parametrize("name,cameras", [("market1501", 6), ("dukemtmc", 8), ("msmt17", 15),
                                          ("synth-market", 6), ("synth-duke", 8)])
def test_dataset_config_loads_and_its_image_size_fits_the_networks(name, cameras):
    cfg = load_config(CONFIGS / f"{name}.yml")
    assert cfg.OUTPUT_DIR == f"output/camstyle/{name}"
    cs = cfg.CAMSTYLE
    assert cs.IMAGE_SIZE[0] == 2 * cs.IMAGE_SIZE[1]  # ReID aspect ratio
    assert cs.IMAGE_SIZE[0] % 4 == 0 and cs.IMAGE_SIZE[1] % 4 == 0
    spec = model_spec(cs, cameras)
    spec["d_conv_dim"] = 1  # only the size arithmetic is under test here
    build_discriminator(spec)
    if name.startswith("synth"):
        assert cs.IMAGE_SIZE == (64, 32) and cs.MAX_ITERS <= 8000


@pytest.mark.parametrize("name", ["synth-market", "synth-duke"])
def test_synthetic_recipe_uses_the_skip_generator_and_the_projection_critic(name):
    cs = load_config(CONFIGS / f"{name}.yml").CAMSTYLE
    assert cs.G_SKIP and cs.D_PROJECTION
    assert build_discriminator(model_spec(cs, 6)).projection


@pytest.mark.parametrize("name,cameras,pairs", [("market1501", 6, 15), ("dukemtmc", 8, 28),
                                                ("synth-duke", 8, 28)])
def test_cyclegan_recipes_select_cyclegan_and_their_networks_fit(name, cameras, pairs):
    cfg = load_config(CONFIGS / f"{name}-cyclegan.yml")
    assert cfg.CAMSTYLE.MODEL == "cyclegan" and cfg.OUTPUT_DIR.endswith(f"{name}-cyclegan")
    cg = cfg.CAMSTYLE.CYCLEGAN
    assert len(camera_pairs(cameras)) == pairs
    assert patch_map_size(cg.CROP_SIZE, cg.D_LAYERS)  # raises when the crop is too small
    assert cg.CROP_SIZE[0] <= cg.LOAD_SIZE[0] and cg.CROP_SIZE[1] <= cg.LOAD_SIZE[1]
    # CamStyle's objective, pool, optimiser and batch, also in the CPU recipe
    assert (cg.LAMBDA_CYCLE, cg.LAMBDA_IDENTITY, cg.POOL_SIZE) == (10.0, 0.5, 50)
    assert (cg.LR, cg.BETAS, cg.BATCH_SIZE) == (2e-4, (0.5, 0.999), 1)
    if not name.startswith("synth"):
        assert cg == CycleGANConfig()  # the section's defaults are the paper's values
        assert (cg.LOAD_SIZE, cg.CROP_SIZE, cg.G_BLOCKS, cg.D_LAYERS) == (
            (286, 286), (256, 256), 9, 3)
        assert (cg.EPOCHS, cg.DECAY_EPOCHS) == (30, 20)
