"""RMG-PMSI's released training script (Wu et al., BMVC 2022): what the runner changes in it, and how it
reads its results.

Release: https://github.com/cj-wade/Progressive-Multi-stage-Interactive-Training-in-Mobile-Network-for-FGVC,
written against commit 857ba00 (``main.py``, ``utils.py``, ``models/``). Every edit below is printed by
the runner before it runs. One changes the network: the release's MobileNetV2 has a stride-1 stem
(marked "for cifar-10"; its own comments on the map sizes assume stride 2), so every map is twice as
large each way as in torchvision's, timm's (fgvc's) and the ImageNet-weights' MobileNetV2. The edit
gives it stride 2, so both sides run the same backbone.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from common import Edit, PeerError, import_from

NAME = "rmg_pmsi"
TITLE = "RMG-PMSI"
URL = "https://github.com/cj-wade/Progressive-Multi-stage-Interactive-Training-in-Mobile-Network-for-FGVC"
COMMIT = "857ba00"
SCRIPT = "main.py"
DATA = {"datasets/New_CUB/CUB_200_2011/train": "train", "datasets/New_CUB/CUB_200_2011/test": "test"}
FOLDERS = ("checkpoints", "logs")  # written by the release, not created by it

RECIPE = {
    "model.backbone": "mobilenetv2_100", "model.head": "multi_stage", "model.multi_stage.stages": 3,
    "model.multi_stage.hidden": 320, "model.multi_stage.channels": None, "model.multi_stage.interaction": True,
    "model.multi_stage.bn_momentum": 0.01,
    "method.name": "progressive", "method.augment": "rmg", "method.phases": True,
    "method.patch_order": "release", "method.concat_loss_weight": 2.0,
    "optim.name": "sgd", "optim.momentum": 0.9, "optim.nesterov": False, "optim.weight_decay": 5e-4,
    "optim.base_batch_size": None, "schedule.per_epoch": False, "schedule.warmup_epochs": 0,
    "schedule.min_lr_factor": 0.0, "schedule.frozen_backbone_bn": "train",
    "data.mean": (0.485, 0.456, 0.406), "data.std": (0.229, 0.224, 0.225), "data.crop_padding": 0, "data.hflip": True,
    "train.label_smoothing": 0.0, "train.mixup_alpha": 0.0, "train.cutmix_alpha": 0.0, "train.grad_clip": None,
}


def cosine_epochs(cfg, num_train: int) -> float:
    """The release's ``CosineAnnealingLR(T_max=epochs * len(train images))``, stepped once per batch,
    as fgvc's ``schedule.cosine_epochs``: T_max / batches per epoch."""
    return cfg.schedule.epochs * num_train / (num_train // cfg.data.batch_size)


def edits(cfg, num_classes: int, seed: int, init: Path | None) -> list[Edit]:
    d, o = cfg.data, cfg.optim
    if o.lr != 10 * (o.backbone_lr or o.lr):
        raise PeerError(f"the release trains the new layers at 10x the backbone's rate: set optim.lr = 10 x "
                        f"optim.backbone_lr (got {o.lr} and {o.backbone_lr})")
    load = (f"\n    model.pmsi.load_state_dict(torch.load({str(init)!r}, weights_only=True))  # the same start as fgvc"
            if init else "")
    return [
        Edit("main.py", "model = Net(MobilenetV2_for_PMSI.mobilenet_v2(pretrained=True), class_num)",
             "model = Net(MobilenetV2_for_PMSI.mobilenet_v2(pretrained=False), class_num)" + load,
             "no download (the start is the release's own init" + (", replaced by fgvc's)" if init else ")")),
        Edit("main.py", "class_num = 200", f"class_num = {num_classes}", "the synthetic set's classes"),
        Edit("main.py", "epochs = 150", f"epochs = {cfg.schedule.epochs}", "epochs"),
        Edit("main.py", "batchSize = 32", f"batchSize = {d.batch_size}", "batch"),
        Edit("main.py", "worker = 8", f"worker = {d.num_workers}", "loader workers"),
        Edit("main.py", "T_max=150 * trainLength", f"T_max={cfg.schedule.epochs} * trainLength",
             "the release's epoch count inside its cosine length (epochs x training images)", count=2),
        Edit("main.py", "if epoch >= 5:", f"if epoch >= {cfg.schedule.freeze_backbone_epochs}:",
             "epochs with a frozen backbone", count=4),
        Edit("main.py", "T.Resize((512, 512)),", f"T.Resize(({d.resize}, {d.resize})),", "image size", count=2),
        Edit("main.py", "T.RandomCrop(448),", f"T.RandomCrop({d.image_size}),", "image size"),
        Edit("main.py", "T.CenterCrop(448),", f"T.CenterCrop({d.image_size}),", "image size"),
        Edit("main.py", "        loss_1, loss_2, loss_3, loss_concat, loss, acc_1, acc_2, acc_3, acc_concat, total_train \\\n",
             "        epoch_start = time.time()\n"
             "        loss_1, loss_2, loss_3, loss_concat, loss, acc_1, acc_2, acc_3, acc_concat, total_train \\\n",
             "time the epoch's training"),
        Edit("main.py", "                             criterion, device, epoch)\n",
             "                             criterion, device, epoch)\n"
             "        print('peer-runner: train seconds %.3f' % (time.time() - epoch_start), flush=True)\n",
             "time the epoch's training"),
        Edit("main.py", "    _train(lr=3e-4, weight_decay=5e-4, momentum=0.9)",
             f"    import random; random.seed({seed}); torch.manual_seed({seed})\n"
             f"    _train(lr={o.backbone_lr or o.lr}, weight_decay=5e-4, momentum=0.9)",
             "learning rate (backbone; the new layers get 10x), and a seed"),
        Edit("utils.py", "    block_size = 448\n", f"    block_size = {d.image_size}\n", "image size"),
        Edit("models/backbone/MobilenetV2_for_PMSI.py",
             "features = [ConvBNReLU(3, input_channel, norm_layer=norm_layer)] # for cifar-10",
             "features = [ConvBNReLU(3, input_channel, stride=2, norm_layer=norm_layer)]",
             "the same backbone as fgvc: MobileNetV2's stride-2 stem (the release's stride 1 is marked 'for cifar-10')"),
    ]


def network(release: Path, cfg, num_classes: int) -> torch.nn.Module:
    """``Net(...).pmsi`` as the patched ``_train`` builds it, at its own initialisation."""
    with import_from(release) as modules:
        backbone = modules("models.backbone.MobilenetV2_for_PMSI").mobilenet_v2(pretrained=False)
        return modules("models.network.PMSI").PMSI(backbone, feature_size=cfg.model.multi_stage.hidden,
                                                   classes_num=num_classes)


def outputs(net: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    return list(net(images, train_flag="val"))


def release_key(ours: str) -> str | None:
    """fgvc ``MultiStageNet`` parameter name -> the release's ``PMSI`` name (None: the backbone, which
    is matched by order — torchvision's MobileNetV2 names differ from timm's, the order does not)."""
    if ours.startswith("backbone.body."):
        return None
    if m := re.fullmatch(r"blocks\.(\d)\.(\d)\.(.+)", ours):
        stage, layer, rest = int(m[1]) + 1, int(m[2]), m[3]
        return f"smooth_conv{stage}.{0 if layer < 2 else 1}.{'conv' if layer in (0, 3) else 'bn'}.{rest}"
    if m := re.fullmatch(r"classifiers\.(\d)\.(.+)", ours):
        return f"classifier{int(m[1]) + 1}.{m[2]}"
    if m := re.fullmatch(r"interaction\.mutual\.([02])\.(.+)", ours):
        return f"map{1 if m[1] == '0' else 2}.{m[2]}"
    return ours.replace("concat_classifier.", "classifier_concat.", 1)


def results(release: Path, log: str) -> list[dict]:
    """Per epoch: test P_concat and P_mix as the release computes them (it calls the test set "valid"),
    and training seconds."""
    concat = re.findall(r"Valid concat loss is :[\d.]+,Valid accuracy is:([\d.]+)%", log)
    mix = re.findall(r"Valid mix loss is :[\d.]+,Valid accuracy is:([\d.]+)%", log)
    seconds = [float(s) for s in re.findall(r"peer-runner: train seconds ([\d.]+)", log)]
    return [{"epoch": i + 1, "concat": float(c), "mix": float(m), "seconds": s}
            for i, (c, m, s) in enumerate(zip(concat, mix, seconds))]
