"""CamStyle configs: every file loads, builds valid networks, and the base file is StarGAN's."""
from pathlib import Path

import pytest

from camstyle.config import build_discriminator, model_spec
from uda_reid.config import load_config
from uda_reid.config.sections.camstyle import CamStyleConfig

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
