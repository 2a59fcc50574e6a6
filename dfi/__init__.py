"""dfi: Deep Feature Interpolation and style-loss reconstruction on VGG-19."""
