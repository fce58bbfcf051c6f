"""Class activation maps (the ``grad-cam`` package) of chosen layers for chosen images, as a PNG grid.

Rows are images, columns the input and one map per layer, each for the model's top-1 class (or a
given class). By default the layers are the last three stages: a PMG / RMG-PMSI model's smooth conv
blocks (what its stage classifiers read), any other model's last three backbone stages. Metadata
models see the missing-metadata vector (zeros) unless ``meta`` is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fgvc.checkpoint import load_checkpoint
from fgvc.data.dataset import load_image
from fgvc.data.records import Sample
from fgvc.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform_for
from fgvc.engine.inference import model_from_checkpoint
from fgvc.errors import FgvcError

METHODS = ("gradcam", "gradcam++", "xgradcam", "eigencam", "layercam")


class ImagesOnly(nn.Module):
    """``model(images, meta)`` as ``f(images)``: what grad-cam calls."""

    def __init__(self, model: nn.Module, meta: torch.Tensor | None = None):
        super().__init__()
        self.model, self.meta = model, meta

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        meta = None if self.meta is None else self.meta.expand(len(images), -1)
        return self.model(images, meta)


def default_layers(model: nn.Module) -> list[str]:
    """Names of the last three stages' modules."""
    if hasattr(model, "blocks") and hasattr(model, "stages"):  # MultiStageNet
        return [f"blocks.{i}" for i in range(len(model.blocks))][-3:]
    info = model.backbone.body.feature_info
    return [f"backbone.body.{info[i]['module']}" for i in range(len(info))][-3:]


def resolve_layers(model: nn.Module, names: list[str]) -> list[nn.Module]:
    try:
        return [model.get_submodule(name) for name in names]
    except AttributeError as exc:
        known = ", ".join(default_layers(model))
        raise FgvcError(f"layer not found in the model: {exc} (the default layers are {known})") from None


def cam_maps(model: nn.Module, images: torch.Tensor, layers: list[str], method: str = "gradcam",
             targets: list[int] | None = None, meta: torch.Tensor | None = None) -> np.ndarray:
    """``[len(layers), N, H, W]`` maps in [0, 1] at the input resolution."""
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    kinds = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "eigencam": EigenCAM,
             "layercam": LayerCAM}
    if method not in kinds:
        raise FgvcError(f"--method {method}: not one of {', '.join(METHODS)}")
    wrapped = ImagesOnly(model.eval(), meta)
    cam_targets = None if targets is None else [ClassifierOutputTarget(t) for t in targets]
    maps = []
    for layer in resolve_layers(model, layers):
        with kinds[method](model=wrapped, target_layers=[layer]) as cam:
            maps.append(cam(input_tensor=images, targets=cam_targets))
    return np.stack(maps)


def denormalise(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """``[N, 3, H, W]`` tensors normalised with ``mean``/``std`` → ``[N, H, W, 3]`` floats in [0, 1]."""
    mean, std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    return (images.detach().cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def save_grid(rgb: np.ndarray, maps: np.ndarray, layers: list[str], row_titles: list[str], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rows, cols = len(rgb), len(layers) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for i in range(rows):
        axes[i, 0].imshow(rgb[i])
        axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
        for j, layer in enumerate(layers, start=1):
            axes[i, j].imshow(show_cam_on_image(rgb[i].astype(np.float32), maps[j - 1, i], use_rgb=True))
            if i == 0:
                axes[i, j].set_title(layer, fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cam_for_checkpoint(checkpoint: str | Path, images: list[str], out: str | Path, layers: list[str] | None = None,
                       method: str = "gradcam", class_index: int | None = None) -> Path:
    """Load an fgvc checkpoint, map ``images`` through its evaluation transform, write the grid PNG."""
    ckpt = load_checkpoint(checkpoint)
    if "config" not in ckpt or "model" not in ckpt:
        raise FgvcError(f"{checkpoint}: not an fgvc checkpoint (no config/model)")
    classes = list(ckpt.get("classes") or [])
    cfg, model = model_from_checkpoint(ckpt, len(classes))
    transform = eval_transform_for(cfg.data)
    batch = torch.stack([transform(load_image(Sample(path=str(p), label=-1, id=Path(p).name))) for p in images])
    model.eval()
    with torch.no_grad():
        probs = ImagesOnly(model)(batch).float().softmax(1)
    top = probs.argmax(1).tolist()
    targets = [class_index] * len(images) if class_index is not None else top
    layers = layers or default_layers(model)
    maps = cam_maps(model, batch, layers, method, targets)
    titles = [f"{Path(p).stem[:14]}\n{classes[t] if classes else t} ({probs[i, t]:.2f})"
              for i, (p, t) in enumerate(zip(images, targets))]
    return save_grid(denormalise(batch, cfg.data.mean, cfg.data.std), maps, layers, titles, Path(out))
