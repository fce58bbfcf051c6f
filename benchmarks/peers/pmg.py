"""PMG's released training script (Du et al., ECCV 2020): what the runner changes in it, and how it
reads its results.

Release: https://github.com/PRIS-CV/PMG-Progressive-Multi-Granularity-Training, written against
commit db7a7d7 (``train.py``, ``model.py``, ``utils.py``, ``Resnet.py``). Every edit below is printed
by the runner before it runs; none touches the training algorithm (phases, losses, optimiser,
schedule, jigsaw).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from common import Edit, PeerError, import_from

NAME = "pmg"
TITLE = "PMG"
URL = "https://github.com/PRIS-CV/PMG-Progressive-Multi-Granularity-Training"
COMMIT = "db7a7d7"
SCRIPT = "train.py"
# where the release reads its data (cwd-relative): ImageFolder trees of the split's train and test images
DATA = {"bird/train": "train", "bird/test": "test"}
RESULTS = "results_test.txt"

# What the release hard-codes and the fgvc side must equal (key: fgvc config key; value: the release's)
RECIPE = {
    "model.head": "multi_stage", "model.multi_stage.stages": 3, "model.multi_stage.channels": None,
    "model.multi_stage.interaction": False, "model.multi_stage.bn_momentum": 0.01,
    "method.name": "progressive", "method.augment": "jigsaw", "method.phases": True,
    "method.patch_order": "release", "method.concat_loss_weight": 2.0,
    "optim.name": "sgd", "optim.momentum": 0.9, "optim.nesterov": False, "optim.weight_decay": 5e-4,
    "optim.base_batch_size": None, "schedule.per_epoch": True, "schedule.warmup_epochs": 0,
    "schedule.min_lr_factor": 0.0, "schedule.cosine_epochs": None, "schedule.freeze_backbone_epochs": 0,
    "data.mean": (0.5, 0.5, 0.5), "data.std": (0.5, 0.5, 0.5), "data.hflip": True,
    "train.label_smoothing": 0.0, "train.mixup_alpha": 0.0, "train.cutmix_alpha": 0.0, "train.grad_clip": None,
}
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # what Resnet.py builds


def edits(cfg, num_classes: int, seed: int, init: Path | None) -> list[Edit]:
    """The patch for ``cfg`` (the fgvc side's config): CPU, sizes, epochs, batch, rates, data, seed, start."""
    d, o = cfg.data, cfg.optim
    size, resize, pad, workers = d.image_size, d.resize, d.crop_padding, d.num_workers
    backbone = cfg.model.backbone.split(".")[0]
    if backbone not in BACKBONES:
        raise PeerError(f"model.backbone={cfg.model.backbone}: the release builds {', '.join(BACKBONES)}")
    if size % 32:
        raise PeerError(f"data.image_size={size}: the release's max pooling needs a multiple of 32")
    features = {"resnet18": 512, "resnet34": 512}.get(backbone, 2048)
    lrs = [o.lr] * 7 + [o.backbone_lr or o.lr]
    load = (f"\n        net.load_state_dict(torch.load({str(init)!r}, weights_only=True))  # the same start as fgvc"
            if init else "")
    return [
        Edit("utils.py", "net = resnet50(pretrained=pretrain)", f"net = {backbone}(pretrained=False)",
             "the comparison's backbone; no download (the start is the release's own init, or fgvc's below)"),
        Edit("utils.py", "net = PMG(net, 512, 200)", f"net = PMG(net, {cfg.model.multi_stage.hidden}, {num_classes})"
             + load, "the synthetic set's classes" + ("; fgvc's initial weights" if init else "")),
        Edit("utils.py", "block_size = 448 // n", f"block_size = {size} // n", "image size"),
        Edit("utils.py", 'device = torch.device("cuda:0,1")', 'device = torch.device("cpu")', "CPU"),
        Edit("utils.py", "transforms.Scale((550, 550)),", f"transforms.Resize(({resize}, {resize})),",
             "image size (torchvision renamed Scale to Resize)"),
        Edit("utils.py", "transforms.CenterCrop(448),", f"transforms.CenterCrop({size}),", "image size"),
        Edit("utils.py", "shuffle=True, num_workers=4)", f"shuffle=True, num_workers={workers})", "loader workers"),
        Edit("model.py", "nn.MaxPool2d(kernel_size=56, stride=56)", f"nn.MaxPool2d(kernel_size={size // 8}, stride={size // 8})",
             "global max pooling at this image size"),
        Edit("model.py", "nn.MaxPool2d(kernel_size=28, stride=28)",
             f"nn.MaxPool2d(kernel_size={size // 16}, stride={size // 16})", "global max pooling at this image size"),
        Edit("model.py", "nn.MaxPool2d(kernel_size=14, stride=14)",
             f"nn.MaxPool2d(kernel_size={size // 32}, stride={size // 32})", "global max pooling at this image size"),
        Edit("model.py", "self.num_ftrs = 2048 * 1 * 1", f"self.num_ftrs = {features} * 1 * 1",
             "the backbone's channels"),
        Edit("model.py", "1024 * 3", "self.num_ftrs // 2 * 3", "the backbone's channels", count=2),
        Edit("train.py", "import random\n", "import random\nimport time\n", "for the epoch timer below"),
        Edit("train.py", "transforms.Scale((550, 550)),", f"transforms.Resize(({resize}, {resize})),",
             "image size (torchvision renamed Scale to Resize)"),
        Edit("train.py", "transforms.RandomCrop(448, padding=8),", f"transforms.RandomCrop({size}, padding={pad}),",
             "image size"),
        Edit("train.py", "shuffle=True, num_workers=4)", f"shuffle=True, num_workers={workers})", "loader workers"),
        Edit("train.py", 'device = torch.device("cuda:0,1")', 'device = torch.device("cpu")', "CPU"),
        Edit("train.py", "lr = [0.002, 0.002, 0.002, 0.002, 0.002, 0.002, 0.002, 0.0002]", f"lr = {lrs}",
             "learning rates (new layers x7, backbone)"),
        Edit("train.py", "        for batch_idx, (inputs, targets) in enumerate(trainloader):",
             "        epoch_start = time.time()\n        for batch_idx, (inputs, targets) in enumerate(trainloader):",
             "time the epoch's training"),
        Edit("train.py", "        train_acc = 100. * float(correct) / total",
             "        print('peer-runner: train seconds %.3f' % (time.time() - epoch_start), flush=True)\n"
             "        train_acc = 100. * float(correct) / total", "time the epoch's training"),
        Edit("train.py", "        if epoch < 5 or epoch >= 80:", "        if True:",
             "test every epoch (the release tests in epochs < 5 and >= 80 of its 200)"),
        Edit("train.py", "train(nb_epoch=200,             # number of epoch\n         batch_size=16,",
             f"random.seed({seed}); np.random.seed({seed}); torch.manual_seed({seed})\n"
             f"train(nb_epoch={cfg.schedule.epochs},             # number of epoch\n         batch_size={d.batch_size},",
             "epochs, batch, and a seed"),
    ]


def network(release: Path, cfg, num_classes: int) -> torch.nn.Module:
    """The network the patched ``load_model`` builds, at its own initialisation."""
    with import_from(release) as modules:
        backbone = getattr(modules("Resnet"), cfg.model.backbone.split(".")[0])(pretrained=False)
        return modules("model").PMG(backbone, cfg.model.multi_stage.hidden, num_classes)


def outputs(net: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    return list(net(images))


def release_key(ours: str) -> str:
    """fgvc ``MultiStageNet`` parameter name -> the release's ``PMG`` name."""
    if ours.startswith("backbone.body."):
        return "features." + ours.removeprefix("backbone.body.")
    if m := re.fullmatch(r"blocks\.(\d)\.(\d)\.(.+)", ours):
        stage, layer, rest = int(m[1]) + 1, int(m[2]), m[3]
        return f"conv_block{stage}.{0 if layer < 2 else 1}.{'conv' if layer in (0, 3) else 'bn'}.{rest}"
    if m := re.fullmatch(r"classifiers\.(\d)\.(.+)", ours):
        return f"classifier{int(m[1]) + 1}.{m[2]}"
    return ours.replace("concat_classifier.", "classifier_concat.", 1)


def results(release: Path, log: str) -> list[dict]:
    """Per epoch: test P_concat and P_mix as the release computes them, and training seconds."""
    tests = re.findall(r"Iteration (\d+), test_acc = ([\d.]+), test_acc_combined = ([\d.]+)",
                       (release / "bird" / RESULTS).read_text())
    seconds = [float(s) for s in re.findall(r"peer-runner: train seconds ([\d.]+)", log)]
    return [{"epoch": int(e) + 1, "concat": float(c), "mix": float(m), "seconds": s}
            for (e, c, m), s in zip(tests, seconds)]
