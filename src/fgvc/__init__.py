"""fgvc: a PyTorch toolkit for fine-grained visual classification."""

__version__ = "0.1.0"
