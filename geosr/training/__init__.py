"""Training VDSR models on high-resolution rasters (self-supervised pairs by area-averaging)."""
