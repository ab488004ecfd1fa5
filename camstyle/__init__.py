"""StarGAN-style camera style transfer for ReID (CamStyle)."""
