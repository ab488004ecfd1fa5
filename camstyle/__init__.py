"""Camera style transfer for ReID (CamStyle / ECN camera invariance): one StarGAN for all
cameras, or one CycleGAN per camera pair (CAMSTYLE.MODEL).

model      StarGAN generator (target camera as a one-hot map) and PatchGAN critic + camera logits
losses     WGAN-GP critic/generator terms, gradient penalty, camera CE, cycle L1
stargan_step     StarGANStep (one iteration, a step of the shared trainer), sample grids
stargan_train    the StarGAN's shared trainer: LR decay, TensorBoard, sample sheets, last.pth
loop_checkpoint  checkpoints of the StarGAN loop before the shared trainer, resumed on it
sample_sheets    sample sheet hooks (PNG and TensorBoard image) of both GANs
cyclegan_model   CycleGAN's ResNet generator and PatchGAN discriminator for one camera pair
cyclegan_losses  least-squares GAN, cycle and identity terms
image_pool       the pool of generated images the discriminators see
cyclegan_step    pair data, sampler and CycleGANStep (a step of the shared trainer)
cyclegan_train   one resumable pair run per camera pair, sharded over pairs
translators      StarGAN / pair CycleGANs behind one call for generation and evaluation
generate   sharded, restartable generation of <root>/bounding_box_train_camstyle
verify     missing / extra / unreadable files of that folder
evaluate   measured check: target-camera rate of a camera classifier, identity rank-1
config     CAMSTYLE section -> networks; checkpoint -> generator
jobs       dataset-level train / generate / verify / evaluate behind tools/camstyle.py
"""
