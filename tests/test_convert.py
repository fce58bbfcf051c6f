"""Importing the authors' Dynamic MLP checkpoints: key mapping, inferred settings, identical outputs.

The "released" checkpoint is built here from the authors' key layout (torchvision ResNet-50 keys,
``loc_net.``, ``loc_att.``) with random values, and the reference output is computed from those raw
tensors by a functional forward written independently of ``fgvc.models.fusion``.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import torchvision

from fgvc.config import FusionConfig, build_config
from fgvc.errors import FgvcError
from fgvc.models import build_model
from fgvc.deploy.convert import (
    convert_dynamic_mlp_state_dict,
    import_dynamic_mlp_checkpoint,
    infer_dynamic_mlp_settings,
)
from fgvc.models.fusion import FusionClassifier, build_fusion_head

IMG, D, H, CLASSES, LOC = 2048, 16, 8, 7, 12  # ResNet-50 feature width; tiny fusion and location widths


def _rand(*shape, scale=0.1, offset=0.0):
    return torch.randn(*shape) * scale + offset


def authors_state(meta_in=6, n=2, seed=0) -> dict[str, torch.Tensor]:
    """A state dict in the layout of the authors' ``ResNet`` + ``FCNet`` + ``FusionModule`` (variant C)."""
    torch.manual_seed(seed)
    state = dict(torchvision.models.resnet50(num_classes=CLASSES).state_dict())
    for k, v in state.items():  # non-trivial BatchNorm statistics
        if k.endswith("running_mean"):
            state[k] = _rand(*v.shape)
        elif k.endswith("running_var"):
            state[k] = torch.rand(*v.shape) + 0.5
    state["loc_net.feats.0.weight"] = _rand(LOC, meta_in, scale=0.5)
    state["loc_net.feats.0.bias"] = _rand(LOC)
    for i in range(2, 6):  # FCResLayer x4 at feats.2..5
        for w in ("w1", "w2"):
            state[f"loc_net.feats.{i}.{w}.weight"] = _rand(LOC, LOC, scale=0.3)
            state[f"loc_net.feats.{i}.{w}.bias"] = _rand(LOC)
    state["loc_net.class_emb.weight"] = _rand(D, LOC, scale=0.3)
    state["loc_att.conv1.weight"], state["loc_att.conv1.bias"] = _rand(D, IMG, scale=0.05), _rand(D)
    pairs = [(D, D)] if n == 1 else [(D, H)] + [(H, H)] * (n - 2) + [(H, D)]
    for i, (p, q) in enumerate(pairs):
        pre = f"loc_att.conv2.{i}.dynamic_conv."
        state[pre + "conv11.conv.0.weight"] = _rand(p, p + D, scale=0.3)
        state[pre + "conv11.conv.0.bias"] = _rand(p)
        state[pre + "conv12.weight"], state[pre + "conv12.bias"] = _rand(p, p, scale=0.3), _rand(p)
        state[pre + "conv21.conv.0.weight"] = _rand(p, p + D, scale=0.3)
        state[pre + "conv21.conv.0.bias"] = _rand(p)
        state[pre + "conv22.weight"] = _rand(p * q, p, scale=0.3)
        state[pre + "conv22.bias"] = _rand(p * q)
        state[pre + "br.0.weight"], state[pre + "br.0.bias"] = _rand(q, offset=1.0), _rand(q)
        state[pre + "conv3.conv.0.weight"] = _rand(q, q, scale=0.3)
        state[pre + "conv3.conv.ln.weight"] = _rand(q, offset=1.0)
        state[pre + "conv3.conv.ln.bias"] = _rand(q)
    state["loc_att.conv3.weight"], state["loc_att.conv3.bias"] = _rand(IMG, D, scale=0.3), _rand(IMG)
    state["loc_att.norm3.weight"], state["loc_att.norm3.bias"] = _rand(IMG, offset=1.0), _rand(IMG)
    return state


def reference_forward(state: dict, images: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """The authors' forward, from the raw tensors (eval mode)."""
    resnet = torchvision.models.resnet50(num_classes=CLASSES)
    resnet.load_state_dict({k: v for k, v in state.items() if not k.startswith(("loc_net.", "loc_att."))})
    resnet.eval()
    r = resnet
    x = r.maxpool(r.relu(r.bn1(r.conv1(images))))
    x = torch.flatten(r.avgpool(r.layer4(r.layer3(r.layer2(r.layer1(x))))), 1)
    s = state
    e = torch.relu(F.linear(loc, s["loc_net.feats.0.weight"], s["loc_net.feats.0.bias"]))
    for i in range(2, 6):
        w = f"loc_net.feats.{i}."
        t = torch.relu(F.linear(e, s[w + "w1.weight"], s[w + "w1.bias"]))
        e = e + torch.relu(F.linear(t, s[w + "w2.weight"], s[w + "w2.bias"]))
    e = F.linear(e, s["loc_net.class_emb.weight"])
    y = F.linear(x, s["loc_att.conv1.weight"], s["loc_att.conv1.bias"])
    i = 0
    while f"loc_att.conv2.{i}.dynamic_conv.conv12.weight" in s:
        b = f"loc_att.conv2.{i}.dynamic_conv."
        p, q = s[b + "conv12.weight"].shape[0], s[b + "conv3.conv.0.weight"].shape[0]
        cat = torch.cat([y, e], 1)
        a = F.linear(torch.relu(F.linear(cat, s[b + "conv11.conv.0.weight"], s[b + "conv11.conv.0.bias"])),
                     s[b + "conv12.weight"], s[b + "conv12.bias"])
        w = F.linear(torch.relu(F.linear(cat, s[b + "conv21.conv.0.weight"], s[b + "conv21.conv.0.bias"])),
                     s[b + "conv22.weight"], s[b + "conv22.bias"]).view(-1, p, q)
        y = torch.bmm(a.unsqueeze(1), w).squeeze(1)
        y = torch.relu(F.layer_norm(y, (q,), s[b + "br.0.weight"], s[b + "br.0.bias"]))
        y = F.linear(y, s[b + "conv3.conv.0.weight"])
        y = torch.relu(F.layer_norm(y, (q,), s[b + "conv3.conv.ln.weight"], s[b + "conv3.conv.ln.bias"]))
        i += 1
    y = F.linear(y, s["loc_att.conv3.weight"], s["loc_att.conv3.bias"])
    y = F.layer_norm(y, (IMG,), s["loc_att.norm3.weight"], s["loc_att.norm3.bias"]) + x
    return F.linear(y, s["fc.weight"], s["fc.bias"])


def wrap(state: dict, how: str) -> dict:
    prefixed = {f"module.{k}": v for k, v in state.items()}
    if how == "state_dict":
        return {"state_dict": prefixed}
    return {"epoch": 90, "model": prefixed, "optimizer": {"state": {}, "param_groups": []}}  # their train.py


def test_imported_checkpoint_reproduces_the_authors_outputs(tmp_path):
    state = authors_state()
    path = tmp_path / "dynamic_mlp_c.pth"
    torch.save(wrap(state, "model"), path)
    ckpt = import_dynamic_mlp_checkpoint(path, tmp_path / "out" / "fgvc.pt")
    assert (tmp_path / "out" / "fgvc.pt").is_file()
    assert ckpt["classes"] == [str(i) for i in range(CLASSES)] and ckpt["dataset"] == "inat2021"
    assert ckpt["source"] == str(path)

    cfg = build_config(ckpt["config"])
    fusion = cfg.model.fusion
    assert (cfg.model.backbone, fusion.name, fusion.variant, fusion.d, fusion.h, fusion.n) == (
        "resnet50", "dynamic_mlp", "c", D, H, 2)
    assert (fusion.loc_width, fusion.loc_res_layers, cfg.data.metadata) == (LOC, 4, ["geo", "temporal"])

    saved = torch.load(tmp_path / "out" / "fgvc.pt", weights_only=False)
    model = build_model(cfg, len(saved["classes"]), load_pretrained=False)  # as evaluate and predict do
    assert isinstance(model, FusionClassifier)
    model.load_state_dict(saved["model"])
    model.eval()

    torch.manual_seed(1)
    images, loc = torch.randn(2, 3, 32, 32), torch.randn(2, 6)
    with torch.no_grad():
        ours, theirs = model(images, loc), reference_forward(state, images, loc)
    assert ours.abs().max() > 0.1 and not torch.allclose(ours[0], ours[1])  # not a degenerate comparison
    assert torch.equal(ours, theirs), f"max difference {(ours - theirs).abs().max():.3g}"


@pytest.mark.parametrize("how", ["state_dict", "model"])
def test_key_mapping(how):
    state = authors_state()
    converted = convert_dynamic_mlp_state_dict(wrap(state, how))
    assert len(converted) == len(state)
    assert torch.equal(converted["backbone.body.layer4.2.bn3.running_var"], state["layer4.2.bn3.running_var"])
    assert torch.equal(converted["head.fc.weight"], state["fc.weight"])
    assert torch.equal(converted["head.loc_net.feats.5.w2.bias"], state["loc_net.feats.5.w2.bias"])
    key = "loc_att.conv2.1.dynamic_conv.conv3.conv.ln.weight"
    assert torch.equal(converted[f"head.{key}"], state[key])


@pytest.mark.parametrize(("meta_in", "n", "metadata"), [(6, 1, ["geo", "temporal"]), (4, 3, ["geo"]),
                                                         (2, 2, ["temporal"])])
def test_inferred_settings(meta_in, n, metadata):
    settings = infer_dynamic_mlp_settings(wrap(authors_state(meta_in=meta_in, n=n), "state_dict"))
    assert settings["n"] == n and settings["d"] == D and settings["img_dim"] == IMG
    assert settings["num_classes"] == CLASSES and settings["meta_in"] == meta_in
    assert settings["metadata"] == metadata and settings["variant"] == "c" and settings["cat_input"] == "both"
    if n > 1:
        assert settings["h"] == H


def test_inferred_variants_of_fgvc_modules():
    """A, B and C-with-one-concatenation are told apart from shapes (fgvc's keys equal the authors')."""
    for variant, cat_input in (("a", "both"), ("b", "both"), ("c", "image"), ("c", "weight")):
        fcfg = FusionConfig(name="dynamic_mlp", variant=variant, cat_input=cat_input, d=D, h=H, loc_width=LOC)
        head = build_fusion_head(fcfg, 32, 6, CLASSES)
        state = {k.removeprefix("head."): v for k, v in head.state_dict().items()}
        state["conv1.weight"] = torch.zeros(1)
        settings = infer_dynamic_mlp_settings(state)
        assert (settings["variant"], settings["cat_input"], settings["h"]) == (variant, cat_input, H)


def test_left_over_keys_are_named(tmp_path):
    state = authors_state()
    state["extra_head.weight"] = torch.zeros(3)
    with pytest.raises(FgvcError, match="extra_head.weight") as info:
        convert_dynamic_mlp_state_dict(wrap(state, "state_dict"))
    assert "\n" not in str(info.value)
    path = tmp_path / "bad.pth"
    torch.save(wrap(state, "model"), path)
    with pytest.raises(FgvcError, match="extra_head.weight"):
        import_dynamic_mlp_checkpoint(path, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_missing_and_misshapen_keys_are_named(tmp_path):
    state = authors_state()
    del state["loc_att.conv1.weight"]
    with pytest.raises(FgvcError, match="loc_att.conv1.weight"):
        convert_dynamic_mlp_state_dict(state)

    state = authors_state()
    del state["layer2.0.conv1.weight"]
    path = tmp_path / "missing.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(FgvcError, match="missing: backbone.body.layer2.0.conv1.weight") as info:
        import_dynamic_mlp_checkpoint(path, tmp_path / "out.pt")
    assert "\n" not in str(info.value)

    state = authors_state()
    state["loc_att.conv2.0.dynamic_conv.conv12.weight"] = torch.zeros(D, D + 1)
    torch.save({"state_dict": state}, path)
    with pytest.raises(FgvcError, match="wrong shape: head.loc_att.conv2.0.dynamic_conv.conv12.weight"):
        import_dynamic_mlp_checkpoint(path, tmp_path / "out.pt")


def test_wrong_backbone_and_unreadable_files(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": authors_state()}, path)
    with pytest.raises(FgvcError, match="resnet18"):
        import_dynamic_mlp_checkpoint(path, tmp_path / "out.pt", backbone="resnet18")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(FgvcError, match="not a readable checkpoint"):
        import_dynamic_mlp_checkpoint(tmp_path / "junk.pth", tmp_path / "out.pt")
    with pytest.raises(FgvcError, match="not found"):
        import_dynamic_mlp_checkpoint(tmp_path / "absent.pth", tmp_path / "out.pt")


def test_cli_import_then_predict_with_and_without_metadata(tmp_path, capsys):
    from PIL import Image

    from fgvc.cli import main

    path, out = tmp_path / "released.pth", tmp_path / "fgvc.pt"
    torch.save(wrap(authors_state(), "state_dict"), path)
    assert main(["-q", "import-checkpoint", "--from", "dynamic-mlp", str(path), str(out)]) == 0
    assert "Dynamic MLP-C" in capsys.readouterr().out
    image = tmp_path / "photo.jpg"
    Image.new("RGB", (48, 40), (90, 120, 30)).save(image)
    args = ["-q", "predict", "--checkpoint", str(out), str(image), "--json", "--topk", "3"]
    assert main(args + ["--lat", "45.5", "--lon", "-73.6", "--date", "2021-06-01"]) == 0
    [with_meta] = json.loads(capsys.readouterr().out)
    assert with_meta["metadata_source"] == "cli" and len(with_meta["top"]) == 3
    assert (with_meta["lat"], with_meta["lon"], with_meta["date"]) == (45.5, -73.6, "2021-06-01")
    assert main(args) == 0
    [without] = json.loads(capsys.readouterr().out)
    assert without["metadata_source"] == "none" and without["lat"] is None  # the photo has no EXIF either
    assert without["top"] != with_meta["top"]  # the metadata changes the prediction
    assert main(args + ["--lat", "95", "--lon", "0", "--date", "2021-06-01"]) == 2
    assert "--lat 95.0: expected a number in -90..90" in capsys.readouterr().err
