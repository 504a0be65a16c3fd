"""genrevision: music genre recognition from spectrogram images with ImageNet CNN features."""
__version__ = "0.1.0"
