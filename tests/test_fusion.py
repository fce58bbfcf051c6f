"""Dynamic MLP (A/B/C), its ablations and the geo-temporal baselines: shapes, sizes, behaviour, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fgvc.config import FusionConfig
from fgvc.errors import ConfigError
from fgvc.models.backbones import Backbone
from fgvc.models.fusion import DynamicMLP, FusionClassifier, LocationEncoder, build_fusion_head

D, M, SMALL_D, SMALL_H, CLASSES = 24, 8, 12, 6, 5
HEADS = [("concat", False), ("concat", True), ("add", False), ("add", True), ("mul", False), ("mul", True),
         ("dynamic_mlp", False), ("same_concat", False), ("same_add", False), ("same_mul", False),
         ("attn_img_q", False), ("attn_meta_q", False), ("attn_cat", False)]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_fusion(**kw) -> FusionConfig:
    base = {"d": SMALL_D, "h": SMALL_H, "n": 2, "loc_width": 16, "loc_res_layers": 2, "loc_dropout": 0.0}
    return FusionConfig(**{**base, **kw})


# --- parameter counts written out from the formulas of docs/methods/dynamic_mlp.md ----------------

def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def layernorm(w: int) -> int:
    return 2 * w


def block_a(p: int, q: int, m: int) -> int:
    return linear(m, p * q) + layernorm(q)  # weight generator Linear(m -> p*q), LayerNorm_q


def block_bc(p: int, q: int, m: int, cat_image: bool, cat_weight: bool) -> int:
    image = linear(p + m * cat_image, p) + linear(p, p)  # Linear(p[+m] -> p), ReLU, Linear(p -> p)
    weight = linear(m + p * cat_weight, p) + linear(p, p * q)  # Linear([p+]m -> p), ReLU, Linear(p -> p*q)
    after = layernorm(q) + linear(q, q, bias=False) + layernorm(q)  # LN, ReLU; bias-free Linear, LN, ReLU
    return image + weight + after


def dynamic_mlp_params(img_dim, m, d, h, n, block) -> int:
    pairs = [(d, d)] if n == 1 else [(d, h)] + [(h, h)] * (n - 2) + [(h, d)]  # d->h, h->h, ..., h->d
    blocks = sum(block(p, q, m) for p, q in pairs)
    return linear(img_dim, d) + blocks + linear(d, img_dim) + layernorm(img_dim)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("variant", ["a", "b", "c"])
def test_dynamic_mlp_shapes_and_sizes(variant, n):
    mlp = DynamicMLP(D, M, d=SMALL_D, h=SMALL_H, n=n, variant=variant)
    out = mlp(torch.randn(3, D), torch.randn(3, M))
    assert out.shape == (3, D)
    block = {"a": block_a, "b": lambda p, q, m: block_bc(p, q, m, False, False),
             "c": lambda p, q, m: block_bc(p, q, m, True, True)}[variant]
    assert n_params(mlp) == dynamic_mlp_params(D, M, SMALL_D, SMALL_H, n, block)


@pytest.mark.parametrize(("cat_input", "cat_image", "cat_weight"), [("image", True, False),
                                                                      ("weight", False, True)])
def test_cat_input_ablation_sizes(cat_input, cat_image, cat_weight):
    mlp = DynamicMLP(D, M, d=SMALL_D, h=SMALL_H, n=2, variant="c", cat_input=cat_input)
    assert mlp(torch.randn(2, D), torch.randn(2, M)).shape == (2, D)
    block = lambda p, q, m: block_bc(p, q, m, cat_image, cat_weight)
    assert n_params(mlp) == dynamic_mlp_params(D, M, SMALL_D, SMALL_H, 2, block)


def test_paper_size_of_dynamic_mlp_c():
    with torch.device("meta"):
        mlp = DynamicMLP(2048, 256, d=256, h=64, n=2, variant="c")
    # reduction 2048*256+256; block 256->64: (512*256+256) + (256*256+256) + (512*256+256) + (256*16384+16384)
    # + 128 + 64*64 + 128; block 64->256: (320*64+64) + (64*64+64) + (320*64+64) + (64*16384+16384) + 512
    # + 256*256 + 512; increase 256*2048+2048; LayerNorm 2*2048
    by_hand = (524_544 + (131_328 + 65_792 + 131_328 + 4_210_688 + 128 + 4_224)
               + (20_544 + 4_160 + 20_544 + 1_064_960 + 512 + 66_048) + 526_336 + 4_096)
    assert n_params(mlp) == by_hand == 6_775_232


def test_skip_connection_zero_increase_is_identity():
    mlp = DynamicMLP(D, M, d=SMALL_D, h=SMALL_H)
    with torch.no_grad():
        mlp.conv3.weight.zero_()
        mlp.conv3.bias.zero_()
    x = torch.randn(4, D)
    assert torch.equal(mlp(x, torch.randn(4, M)), x)


@pytest.mark.parametrize("variant", ["a", "b", "c"])
def test_batch_equals_per_sample(variant):
    torch.manual_seed(0)
    mlp = DynamicMLP(D, M, d=SMALL_D, h=SMALL_H, n=3, variant=variant).eval()
    x, z = torch.randn(6, D), torch.randn(6, M)
    batched = mlp(x, z)
    single = torch.cat([mlp(x[i:i + 1], z[i:i + 1]) for i in range(6)])
    # a batched matmul sums in another order than six single ones: float32 rounding through three
    # recursions and layer norms (seen up to 1.9e-6 on values of order 1); a wrong sample mix is order 1
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(batched, torch.cat([single[1:], single[:1]]), atol=1e-2)


def test_block_a_is_a_per_sample_matrix_product():
    mlp = DynamicMLP(D, M, d=SMALL_D, n=1, variant="a").eval()
    x, z = torch.randn(3, D), torch.randn(3, M)
    block = mlp.conv2[0].dynamic_conv
    y = mlp.conv1(x)
    expected = []
    for i in range(3):  # the definition, one sample at a time
        w = block.get_weight(z[i]).view(SMALL_D, SMALL_D)
        expected.append(torch.relu(F.layer_norm(y[i] @ w, (SMALL_D,), block.norm.weight, block.norm.bias)))
    out = mlp.norm3(mlp.conv3(torch.stack(expected))) + x
    torch.testing.assert_close(mlp(x, z), out, rtol=1e-5, atol=1e-6)


def test_blocks_read_the_original_metadata_embedding():
    mlp = DynamicMLP(D, M, d=SMALL_D, h=SMALL_H, n=3).eval()
    seen = []
    for recursion in mlp.conv2:
        recursion.register_forward_hook(lambda mod, args, out: seen.append(args[1]))
    z = torch.randn(2, M)
    mlp(torch.randn(2, D), z)
    assert len(seen) == 3 and all(s is z for s in seen)


def test_same_structure_ablation_has_no_dynamic_weights():
    for combine in ("concat", "add", "mul"):
        mlp = DynamicMLP(D, M, d=SMALL_D, h=SMALL_H, n=2, combine=combine)
        block = mlp.conv2[0].dynamic_conv
        assert block.conv22.out_features == block.conv12.out_features == SMALL_H
        assert mlp(torch.randn(2, D), torch.randn(2, M)).shape == (2, D)


@pytest.mark.parametrize(("name", "compensated"), HEADS)
def test_heads_train(name, compensated):
    torch.manual_seed(0)
    head = build_fusion_head(tiny_fusion(name=name, compensated=compensated), D, 6, CLASSES)
    img, meta, y = torch.randn(16, D), torch.randn(16, 6), torch.randint(0, CLASSES, (16,))
    logits = head(img, meta)
    assert logits.shape == (16, CLASSES) and torch.isfinite(logits).all()
    before = [p.detach().clone() for p in head.parameters()]
    opt = torch.optim.SGD(head.parameters(), lr=0.05)
    loss0 = F.cross_entropy(logits, y)
    opt.zero_grad()
    loss0.backward()
    opt.step()
    loss1 = F.cross_entropy(head(img, meta), y)
    assert loss1 < loss0
    changed = [not torch.equal(b, p) for b, p in zip(before, head.parameters(), strict=True)]
    assert all(changed), "every parameter gets a gradient"


@pytest.mark.parametrize("meta_in", [6, 4, 2])
@pytest.mark.parametrize("name", ["dynamic_mlp", "concat", "attn_cat"])
def test_metadata_subsets_and_missing_metadata(name, meta_in):
    head = build_fusion_head(tiny_fusion(name=name), D, meta_in, CLASSES).eval()
    assert head.loc_net.feats[0].in_features == meta_in
    out = head(torch.randn(3, D), torch.zeros(3, meta_in))  # all-zero: metadata missing
    assert out.shape == (3, CLASSES) and torch.isfinite(out).all()


def test_compensated_heads_match_dynamic_mlp_size():
    dynamic = n_params(build_fusion_head(tiny_fusion(name="dynamic_mlp"), D, 6, CLASSES))
    for name in ("concat", "add", "mul"):
        plain = n_params(build_fusion_head(tiny_fusion(name=name), D, 6, CLASSES))
        matched = build_fusion_head(tiny_fusion(name=name, compensated=True), D, 6, CLASSES)
        width = D + SMALL_D if name == "concat" else D
        assert plain < dynamic
        assert abs(n_params(matched) - dynamic) <= width + 1  # half a hidden unit of 2*width+1 params


def test_mul_head_multiplies_probabilities():
    head = build_fusion_head(tiny_fusion(name="mul"), D, 6, CLASSES).eval()
    img, meta = torch.randn(4, D), torch.randn(4, 6)
    p_img = head.fc(head.mlp(img)).softmax(1)
    p_loc = head.fc_meta(head.loc_net(meta)).softmax(1)
    product = p_img * p_loc
    torch.testing.assert_close(head(img, meta).softmax(1), product / product.sum(1, keepdim=True))


@pytest.mark.parametrize("name", ["attn_img_q", "attn_meta_q", "attn_cat"])
def test_attention_reads_both_modalities(name):
    torch.manual_seed(0)
    head = build_fusion_head(tiny_fusion(name=name), D, 6, CLASSES).eval()
    fusion = head.loc_att
    assert fusion.tokens > 1  # a single key would make cross-attention ignore its query
    img, z = torch.randn(2, D), torch.randn(2, SMALL_D)
    base = fusion(img, z)
    assert not torch.allclose(fusion(img, torch.randn(2, SMALL_D)), base)
    assert not torch.allclose(fusion(torch.randn(2, D), z), base)


@pytest.mark.parametrize("kw", [
    {"name": "none"},
    {"name": "dynamic_mlp", "compensated": True},
    {"name": "dynamic_mlp", "variant": "b", "cat_input": "image"},
    {"name": "same_add", "variant": "a"},
    {"name": "concat", "variant": "a"},
    {"name": "attn_cat", "cat_input": "weight"},
])
def test_impossible_combinations_are_config_errors(kw):
    with pytest.raises(ConfigError) as info:
        build_fusion_head(tiny_fusion(**kw), D, 6, CLASSES)
    assert "\n" not in str(info.value) and "model.fusion" in str(info.value)


def test_no_metadata_is_a_config_error():
    with pytest.raises(ConfigError, match="data.metadata"):
        build_fusion_head(tiny_fusion(name="dynamic_mlp"), D, 0, CLASSES)


def test_fusion_classifier():
    backbone = Backbone("test_resnet", announce=False)
    head = build_fusion_head(tiny_fusion(name="dynamic_mlp"), backbone.num_features, 6, CLASSES)
    model = FusionClassifier(backbone, head).eval()
    images, meta = torch.randn(2, 3, 32, 32), torch.randn(2, 6)
    assert model(images, meta).shape == (2, CLASSES)
    assert model.fused_features(images, meta).shape == (2, backbone.num_features)
    assert torch.equal(model(images), model(images, torch.zeros(2, 6)))  # None: metadata missing
    new = {id(p) for p in model.new_parameters()}
    assert new == {id(p) for p in head.parameters()}
    assert not new & {id(p) for p in backbone.parameters()}


def test_location_encoder_keeps_the_authors_names():
    enc = LocationEncoder(6, 16, 8, n_res=4)
    keys = list(enc.state_dict())
    assert keys[:2] == ["feats.0.weight", "feats.0.bias"]
    assert "feats.5.w2.bias" in keys and keys[-1] == "class_emb.weight"
