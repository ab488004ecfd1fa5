"""CAMSTYLE section: StarGAN camera-style transfer (one camera = one domain).

Defaults are the original StarGAN ones (Choi et al., CVPR 2018; yunjey/stargan ``main.py``):
g/d conv dim 64, 6 residual blocks in G, 6 strided convs in D, lambda_cls 1, lambda_rec 10,
lambda_gp 10, Adam lr 1e-4 with betas (0.5, 0.999) for both nets, n_critic 5, batch 16,
200k iterations with the learning rates decayed linearly to zero over the last 100k.
ECN (Zhong et al., CVPR 2019; zhunzhong07/ECN README) used StarGAN for MSMT17's camera styles;
CamStyle (CVPR 2018) used CycleGAN per camera pair: ``MODEL cyclegan`` selects it, configured
by the CYCLEGAN sub-section. The StarGAN image size is ReID-shaped (H, W).
"""
from __future__ import annotations

from dataclasses import field
from typing import Tuple

from uda_reid.config.schema import section


@section
class CamStyleEvalConfig:
    """The measured check (camstyle.evaluate): small CNNs trained on the real images."""
    CLASSIFIER_SIZE: Tuple[int, int] = (64, 32)  # (height, width)
    EPOCHS: int = 10
    MAX_QUERIES: int = 300  # held-out query images translated into every other camera
    MAX_GALLERY: int = 3000
    # Identity embedding for the identity-keeping check: a trained uda_reid checkpoint (its
    # run's config.yaml beside it, e.g. a stage-1 source model under ADAPT.SOURCE_CACHE);
    # empty: a small CNN trained here on the real training identities.
    EMBEDDING_WEIGHTS: str = ""


@section
class CycleGANConfig:
    """One CycleGAN per camera pair (CAMSTYLE.MODEL cyclegan). Defaults are CamStyle's
    (Zhong et al., CVPR 2018; zhunzhong07/CamStyle ``CycleGAN-for-CamStyle`` option defaults
    and train scripts): 9-block ResNet G with dropout, 70x70 PatchGAN D (3 strided layers),
    instance norm, N(0, 0.02) init, least-squares GAN, cycle weight 10, identity weight 0.5 of
    it, a pool of 50 generated images, Adam 2e-4 betas (0.5, 0.999), batch 1, images resized to
    286x286 then randomly cropped to 256x256 and flipped, 30 epochs then 20 of linear decay;
    generation at 256x256 (no crop)."""
    LOAD_SIZE: Tuple[int, int] = (286, 286)  # (height, width) before the random crop
    CROP_SIZE: Tuple[int, int] = (256, 256)  # training crop; generation runs at this size
    NGF: int = 64  # generator filters of the first layer
    NDF: int = 64  # discriminator filters of the first layer
    G_BLOCKS: int = 9  # residual blocks of the generator
    D_LAYERS: int = 3  # strided layers of the PatchGAN (3: 70x70 receptive field)
    DROPOUT: bool = True  # dropout 0.5 in the residual blocks (training only)
    INIT_STD: float = 0.02
    LAMBDA_CYCLE: float = 10.0
    LAMBDA_IDENTITY: float = 0.5  # identity loss weight as a fraction of LAMBDA_CYCLE
    POOL_SIZE: int = 50  # generated images kept for the discriminators (0: none)
    LR: float = 2e-4
    BETAS: Tuple[float, float] = (0.5, 0.999)
    BATCH_SIZE: int = 1
    EPOCHS: int = 30  # at the initial learning rate
    DECAY_EPOCHS: int = 20  # then linearly decayed towards zero
    FLIP: bool = True
    NUM_WORKERS: int = 4  # CamStyle's nThreads
    LOG_PERIOD: int = 100  # iterations between TensorBoard scalars
    CHECKPOINT_PERIOD: int = 1  # epochs between last.pth writes (and at the end)
    SAMPLE_PERIOD: int = 5  # epochs between sample sheets (and at the end)
    NUM_SAMPLE_IMAGES: int = 3  # rows per camera of the sample sheet


MODELS = ("stargan", "cyclegan")


@section
class CamStyleConfig:
    MODEL: str = "stargan"  # stargan (one model, cameras as domains) | cyclegan (per pair)
    IMAGE_SIZE: Tuple[int, int] = (128, 64)  # (height, width); divisible by 2**D_REPEAT_NUM
    G_CONV_DIM: int = 64
    D_CONV_DIM: int = 64
    G_REPEAT_NUM: int = 6  # residual blocks in the generator
    G_SKIP: bool = False  # ours: G outputs a change added to its input (starts as identity)
    G_UPSAMPLE: str = "deconv"  # deconv (StarGAN's transposed convs) | resize (resize + conv)
    D_REPEAT_NUM: int = 6  # strided convolutions in the discriminator
    D_PROJECTION: bool = False  # ours: the critic is told the claimed camera (projection)
    LAMBDA_CLS: float = 1.0
    LAMBDA_REC: float = 10.0
    LAMBDA_GP: float = 10.0
    G_LR: float = 1e-4
    D_LR: float = 1e-4
    BETAS: Tuple[float, float] = (0.5, 0.999)
    N_CRITIC: int = 5  # discriminator steps per generator step
    BATCH_SIZE: int = 16
    MAX_ITERS: int = 200000
    LR_DECAY_ITERS: int = 100000  # linear decay to zero over the last LR_DECAY_ITERS iterations
    FLIP: bool = True  # random horizontal flip of training images
    NUM_WORKERS: int = 2
    LOG_PERIOD: int = 10
    SAMPLE_PERIOD: int = 1000  # TensorBoard sample grid
    CHECKPOINT_PERIOD: int = 10000  # last.pth and the sample sheet PNG
    NUM_SAMPLE_IMAGES: int = 4  # rows of the sample sheet (each row: real + every camera)
    GEN_BATCH_SIZE: int = 32  # source images per generation batch
    JPEG_QUALITY: int = 95
    CYCLEGAN: CycleGANConfig = field(default_factory=CycleGANConfig)
    EVAL: CamStyleEvalConfig = field(default_factory=CamStyleEvalConfig)
