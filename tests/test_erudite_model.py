"""The erudite model's modules: spatial attention, experts, re-fusion gate, the head's switches, θ selection."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from fgvc.models.backbones import Backbone
from fgvc.models.erudite import EruditeHead, EruditeNet, Expert, ReFusionGate, SpatialAttention

SWITCHES = [(False, False), (False, True), (True, False), (True, True)]  # (attention, experts)


def randomise_bn(module: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode hand computations test something."""
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                bn.weight.normal_()
                bn.bias.normal_()


def test_spatial_attention_matches_a_loop_over_groups():
    torch.manual_seed(0)
    att = SpatialAttention(12, heads=4)
    x = torch.randn(2, 12, 5, 3)
    out = att(x)
    assert out.shape == x.shape
    w, b = att.conv.weight, att.conv.bias
    assert w.shape == (4, 3, 1, 1) and b.shape == (4,)
    parts = []
    for g in range(4):
        group = x[:, 3 * g:3 * (g + 1)]
        spatial = torch.sigmoid(torch.einsum("bchw,c->bhw", group, w[g, :, 0, 0]) + b[g])
        parts.append(group * spatial[:, None])
    torch.testing.assert_close(out, torch.cat(parts, 1))
    assert att.maps(x).shape == (2, 4, 5, 3)


def test_spatial_attention_needs_divisible_channels():
    with pytest.raises(ValueError, match=r"\b10 channels.*\b4 heads"):
        SpatialAttention(10, heads=4)
    with pytest.raises(ValueError, match="0 heads"):
        SpatialAttention(8, heads=0)


def test_expert_is_conv_bn_relu_then_global_max():
    torch.manual_seed(0)
    expert = Expert(6, 4)
    randomise_bn(expert)
    expert.eval()
    x = torch.randn(3, 6, 4, 5)
    conv, bn, _ = expert.block
    assert conv.bias is None
    y = torch.einsum("bchw,oc->bohw", x, conv.weight[:, :, 0, 0])
    y = (y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    y = torch.relu(y * bn.weight[:, None, None] + bn.bias[:, None, None])
    torch.testing.assert_close(expert(x), y.amax(dim=(2, 3)))
    assert expert(x).shape == (3, 4) and expert.feature_map(x).shape == (3, 4, 4, 5)


def test_gate_weights_sum_to_one_and_fuse_as_a_weighted_sum():
    torch.manual_seed(0)
    gate = ReFusionGate(channels=5, num_datasets=3)
    features = [torch.randn(4, 5) for _ in range(3)]
    weights = gate.weights(features)
    assert weights.shape == (4, 3, 5)
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(4, 5))
    fused = gate(features)
    assert fused.shape == (4, 5)
    by_hand = torch.zeros(4, 5)
    for n in range(3):
        for c in range(5):
            by_hand[:, c] += weights[:, n, c] * features[n][:, c]
    torch.testing.assert_close(fused, by_hand)
    # the weights are the per-channel softmax over datasets of Linear(N·C → N·C) on the concatenation
    logits = gate.fc(torch.cat(features, 1)).view(4, 3, 5)
    torch.testing.assert_close(weights, torch.softmax(logits, 1))
    # a stacked [B, N, C] tensor is the same input
    torch.testing.assert_close(gate(torch.stack(features, 1)), fused)
    with pytest.raises(ValueError, match="expects 3 features of 5 channels"):
        gate(features[:2])


def test_gate_of_one_dataset_passes_the_expert_through():
    gate = ReFusionGate(channels=4, num_datasets=1)
    f = torch.randn(2, 4)
    torch.testing.assert_close(gate([f]), f)


@pytest.mark.parametrize("attention,experts", SWITCHES)
@pytest.mark.parametrize("expert_channels", [None, 8])
def test_head_shapes(attention, experts, expert_channels):
    head = EruditeHead(16, [3, 5], expert_channels, attention=attention, experts=experts, heads=4)
    out = head(torch.randn(2, 16, 3, 3))
    assert out["logits"].shape == (2, 8)
    width = (expert_channels or 16) if experts else 16
    assert out["features"].shape == (2, width) and head.feature_dim == width
    if experts:
        assert [a.shape for a in out["aux"]] == [(2, 3), (2, 5)]
    else:
        assert "aux" not in out and head.experts is None and head.gate is None
    assert (head.attention is not None) == attention
    assert head.offsets == [0, 3] and head.num_classes == 8


def test_head_composes_attention_experts_gate_and_classifiers():
    torch.manual_seed(0)
    head = EruditeHead(16, [3, 5], 8, heads=4)
    randomise_bn(head)
    head.eval()
    x = torch.randn(2, 16, 3, 3)
    attended = head.attention(x)
    fs = [expert(attended) for expert in head.experts]
    fused = head.gate(fs)
    out = head(x)
    torch.testing.assert_close(out["logits"], head.classifier(fused))
    for aux, classifier, f in zip(out["aux"], head.aux_classifiers, fs):
        torch.testing.assert_close(aux, classifier(f))


def test_baseline_head_is_global_max_pooling_and_one_classifier():
    torch.manual_seed(0)
    head = EruditeHead(16, [3, 5], attention=False, experts=False)
    x = torch.randn(2, 16, 3, 3)
    torch.testing.assert_close(head(x)["logits"], head.classifier(x.amax(dim=(2, 3))))
    assert head.classifier.in_features == 16


def test_head_arguments_are_checked():
    with pytest.raises(ValueError, match="groups"):
        EruditeHead(16, [])
    with pytest.raises(ValueError, match="groups"):
        EruditeHead(16, [3, 0])
    with pytest.raises(ValueError, match="expert_channels"):
        EruditeHead(16, [3], expert_channels=0)
    with pytest.raises(ValueError, match="12 channels.*8 heads"):
        EruditeHead(12, [3], heads=8)
    EruditeHead(12, [3], heads=8, attention=False)  # no attention, no divisibility rule


def expected_parameters(c: int, c2: int, groups: list[int], heads: int, attention: bool, experts: bool) -> dict:
    n, k = len(groups), sum(groups)
    counts = {"attention": c + heads if attention else 0}  # grouped conv: C/heads weights + 1 bias per head
    if experts:
        counts["experts"] = n * (c * c2 + 2 * c2)  # conv without bias + BN weight and bias
        counts["aux_classifiers"] = sum((c2 + 1) * kn for kn in groups)
        counts["gate"] = (n * c2) ** 2 + n * c2
        counts["classifier"] = (c2 + 1) * k
    else:
        counts["experts"] = counts["aux_classifiers"] = counts["gate"] = 0
        counts["classifier"] = (c + 1) * k
    return counts


@pytest.mark.parametrize("attention,experts", SWITCHES)
def test_head_parameter_counts(attention, experts):
    head = EruditeHead(16, [3, 5], 8, attention=attention, experts=experts, heads=4)
    expected = expected_parameters(16, 8, [3, 5], 4, attention, experts)
    got = {name: sum(p.numel() for p in module.parameters()) if module is not None else 0
           for name, module in [("attention", head.attention), ("experts", head.experts),
                                ("aux_classifiers", head.aux_classifiers), ("gate", head.gate),
                                ("classifier", head.classifier)]}
    assert got == expected
    assert sum(p.numel() for p in head.parameters()) == sum(expected.values())
    if attention and experts:
        assert sum(expected.values()) == 20 + 288 + 72 + 272 + 72


@pytest.mark.parametrize("attention", [False, True])
def test_meta_parameter_names_select_the_attention(attention):
    head = EruditeHead(16, [3, 5], 8, attention=attention, heads=4)
    names = head.meta_parameter_names()
    own = dict(head.named_parameters())
    selected = {id(own[name]) for name in names}
    expected = {id(p) for p in head.attention.parameters()} if attention else set()
    assert selected == expected == {id(p) for p in head.attention_parameters()}
    assert len(names) == (2 if attention else 0)


def test_functional_call_over_the_attention_alone():
    torch.manual_seed(0)
    head = EruditeHead(16, [3, 5], 8, heads=4).eval()
    x = torch.randn(2, 16, 3, 3)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    theta = {name: p.detach().clone() for name, p in head.named_parameters()
             if name in head.meta_parameter_names()}
    torch.testing.assert_close(functional_call(head, theta, (x,))["logits"], head(x)["logits"])
    adapted = {name: (t + torch.randn_like(t)).requires_grad_() for name, t in theta.items()}
    out = functional_call(head, adapted, (x,))
    assert not torch.allclose(out["logits"], head(x)["logits"])
    grads = torch.autograd.grad(out["logits"].sum(), list(adapted.values()))
    assert all(g.abs().sum() > 0 for g in grads)  # θ' gets gradients: MAML can differentiate through it
    for k, v in head.state_dict().items():
        torch.testing.assert_close(v, before[k])


@pytest.fixture(scope="module")
def backbone_width() -> int:
    return Backbone("test_resnet", announce=False).body.num_features


@pytest.mark.parametrize("attention,experts", SWITCHES)
def test_erudite_net_shapes(attention, experts, backbone_width):
    net = EruditeNet(Backbone("test_resnet", announce=False), [3, 4, 2], expert_channels=8,
                     attention=attention, experts=experts)
    images = torch.randn(2, 3, 64, 64)
    fmap = net.features(images)
    assert fmap.shape[:2] == (2, backbone_width) and net.head.in_channels == backbone_width
    logits = net(images, meta=torch.randn(2, 6))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 9)
    out = net.forward_train(images)
    assert out["logits"].shape == (2, 9)
    assert ([a.shape for a in out["aux"]] == [(2, 3), (2, 4), (2, 2)]) if experts else "aux" not in out
    net.eval()
    torch.testing.assert_close(net(images), net.forward_train(images)["logits"])


def test_new_parameters_are_the_head_and_exclude_the_backbone():
    net = EruditeNet(Backbone("test_resnet", announce=False), [3, 4], expert_channels=8)
    backbone = {id(p) for p in net.backbone.parameters()}
    new = net.new_parameters()
    assert not any(id(p) in backbone for p in new)
    assert {id(p) for p in new} == {id(p) for p in net.head.parameters()}
    assert len(new) + len(backbone) == len(list(net.parameters()))


def test_net_meta_parameter_names_work_with_functional_call():
    torch.manual_seed(0)
    net = EruditeNet(Backbone("test_resnet", announce=False), [3, 4], expert_channels=8).eval()
    names = net.meta_parameter_names()
    assert names == ["head.attention.conv.weight", "head.attention.conv.bias"]
    own = dict(net.named_parameters())
    assert {id(own[n]) for n in names} == {id(p) for p in net.attention_parameters()}
    images = torch.randn(2, 3, 64, 64)
    adapted = {n: own[n].detach() + 1.0 for n in names}
    assert not torch.allclose(functional_call(net, adapted, (images,)), net(images))


def test_hierarchical_head_is_dataset_then_class():
    import torch.nn.functional as F

    from fgvc.models.erudite import HierarchicalHead

    torch.manual_seed(0)
    head = HierarchicalHead(6, [2, 3])
    fmap = torch.randn(4, 6, 3, 3)
    out = head(fmap)["logits"]
    assert out.shape == (4, 5)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(4))  # a distribution over the union
    pooled = fmap.amax(dim=(2, 3))
    coarse = F.log_softmax(head.coarse(pooled), 1)
    torch.testing.assert_close(out[:, 2:], coarse[:, 1:2] + F.log_softmax(head.classifiers[1](pooled), 1))
    # cross-entropy on the union = coarse CE + the own dataset head's CE
    labels = torch.tensor([0, 1, 2, 4])
    dataset = torch.tensor([0, 0, 1, 1])
    own = torch.stack([F.log_softmax(head.classifiers[d](pooled[i:i + 1]), 1)[0, labels[i] - (0 if d == 0 else 2)]
                       for i, d in enumerate(dataset.tolist())])
    expected = F.nll_loss(coarse, dataset) - own.mean()
    torch.testing.assert_close(F.cross_entropy(out, labels), expected)
