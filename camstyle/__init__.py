"""StarGAN-style camera style transfer for ReID (CamStyle / ECN camera invariance).

model      StarGAN generator (target camera as a one-hot map) and PatchGAN critic + camera logits
losses     WGAN-GP critic/generator terms, gradient penalty, camera CE, cycle L1
trainer    StarGANTrainer (one iteration), resumable BatchStream, fit() with checkpoints/samples
generate   sharded, restartable generation of <root>/bounding_box_train_camstyle
verify     missing / extra / unreadable files of that folder
evaluate   measured check: target-camera rate of a camera classifier, identity rank-1
config     CAMSTYLE section -> networks / trainer; checkpoint -> generator
jobs       dataset-level train / generate / verify / evaluate behind tools/camstyle.py
"""
