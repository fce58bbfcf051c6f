"""fgvc: a PyTorch toolkit for fine-grained visual classification.

``fgvc.load(source)`` gives a trained model ready to predict, from an fgvc checkpoint (``.pt``), a
folder written by ``fgvc export --format hub``, a Hugging Face Hub id ``hf://owner/name``, or an
exported ``.onnx`` file. ``import fgvc`` itself loads nothing heavy: the model code comes with the call.
"""

from fgvc.version import __version__

__all__ = ["__version__", "load"]


def load(source, device="cpu"):
    """The model at ``source`` as ``fgvc.deploy.model.InferenceModel``: ``model(images, meta=None)``
    gives logits; ``model.classes``, ``model.preprocess`` (a PIL image or uint8 tensor to the input
    tensor), ``model.metadata`` (what it reads) and ``model.config`` describe it."""
    from fgvc.deploy.model import load_inference_model  # on demand: torch and timm load with the model

    return load_inference_model(source, device)
