"""The erudite training step: L_all, the second-order meta-gradient, the two stages, PCGrad."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_tree
from torch.func import functional_call

from fgvc.config import build_config
from fgvc.methods.erudite import Erudite, dataset_index, joint_loss, pcgrad
from fgvc.models.backbones import Backbone
from fgvc.models.erudite import EruditeNet

GROUPS = [3, 2, 4]


def _method(tmp_path, meta="maml", meta_lr=0.5):
    cfg = build_config(tiny_tree(tmp_path, tmp_path, model={"head": "erudite"},
                                 method={"name": "erudite", "meta": meta, "meta_lr": meta_lr}))
    return Erudite(cfg, sum(GROUPS))


def _net(seed=0):
    torch.manual_seed(seed)
    return EruditeNet(Backbone("test_resnet", announce=False), GROUPS, expert_channels=16, heads=4)


def test_dataset_index_and_joint_loss_by_hand():
    labels = torch.tensor([0, 2, 3, 4, 5, 8])
    index, offset = dataset_index(labels, GROUPS)
    assert index.tolist() == [0, 0, 1, 1, 2, 2] and offset.tolist() == [0, 0, 3, 3, 5, 5]
    torch.manual_seed(0)
    out = {"logits": torch.randn(6, 9), "aux": [torch.randn(6, 3), torch.randn(6, 2), torch.randn(6, 4)]}
    aux = [F.cross_entropy(out["aux"][0][:2], torch.tensor([0, 2])),
           F.cross_entropy(out["aux"][1][2:4], torch.tensor([0, 1])),
           F.cross_entropy(out["aux"][2][4:], torch.tensor([0, 3]))]
    expected = F.cross_entropy(out["logits"], labels) + sum(aux) / 3
    torch.testing.assert_close(joint_loss(out, labels, GROUPS), expected)
    # a dataset absent from the batch does not count in the mean
    first_two = {"logits": out["logits"][:2], "aux": [a[:2] for a in out["aux"]]}
    torch.testing.assert_close(joint_loss(first_two, labels[:2], GROUPS),
                               F.cross_entropy(out["logits"][:2], labels[:2]) + aux[0])


def test_meta_gradient_is_second_order(tmp_path, monkeypatch):
    # a large inner step makes the second-order term visible at initialisation (gradients are small)
    method, net = _method(tmp_path, meta_lr=100.0), _net()
    net.eval()  # BatchNorm on running statistics: the same function at every call
    images = torch.randn(6, 3, 32, 32)
    labels = torch.tensor([0, 1, 3, 4, 6, 8])  # two samples of each dataset
    monkeypatch.setattr(torch, "randint", lambda high, size, **kw: torch.tensor([1]))  # meta-test: dataset 1
    theta = method.theta(net)
    with torch.no_grad():
        fmap = net.features(images)
    ours = torch.autograd.grad(method.meta_loss(net, fmap, labels, theta, GROUPS), list(theta.values()))

    train, test = dataset_index(labels, GROUPS)[0] != 1, dataset_index(labels, GROUPS)[0] == 1
    alpha = method.meta_lr

    def loss_at(params, mask):
        return joint_loss(functional_call(net.head, params, (fmap[mask],)), labels[mask], GROUPS)

    def meta_objective(params, first_order=False):  # the explicit expression, for torch.func.grad
        inner = torch.func.grad(loss_at)(params, train)
        if first_order:
            inner = {k: v.detach() for k, v in inner.items()}
        adapted = {k: params[k] - alpha * inner[k] for k in params}
        return loss_at(params, train) + loss_at(adapted, test)

    start = {k: v.detach() for k, v in theta.items()}
    reference = torch.func.grad(meta_objective)(start)
    first = torch.func.grad(lambda p: meta_objective(p, first_order=True))(start)
    for name, got in zip(theta, ours):
        torch.testing.assert_close(got, reference[name], rtol=1e-4, atol=1e-6)
    gap = max((first[n] - reference[n]).abs().max().item() for n in theta)
    size = max(reference[n].abs().max().item() for n in theta)
    assert gap > 1e-3 * size  # the first-order gradient is a different number


class Updates:
    """The trainer's update with a plain SGD step; records which parameters each update changed."""

    def __init__(self, net):
        self.net, self.changed = net, []
        self.opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def __call__(self, loss, only=None, skip=None, grads=None):
        before = {n: p.detach().clone() for n, p in self.net.named_parameters()}
        self.opt.zero_grad(set_to_none=True)
        if only is not None:
            grads = grads or torch.autograd.grad(loss, only, allow_unused=True)
            for p, g in zip(only, grads):
                p.grad = g
        else:
            loss.backward()
            for p in skip or ():
                p.grad = None
        self.opt.step()
        self.changed.append({n for n, p in self.net.named_parameters() if not torch.equal(p, before[n])})
        return loss.item()


@pytest.mark.parametrize("meta", ["maml", "pcgrad"])
def test_stage_one_leaves_theta_and_stage_two_touches_only_theta(tmp_path, meta):
    method, net = _method(tmp_path, meta), _net()
    update = Updates(net)
    batch = {"image": torch.randn(6, 3, 32, 32), "label": torch.tensor([0, 1, 3, 4, 6, 8])}
    method.train_step(net, batch, update, lambda: torch.autocast("cpu", enabled=False))
    theta = {f"head.{n}" for n in net.head.meta_parameter_names()}
    assert len(update.changed) == 2
    stage1, stage2 = update.changed
    assert not stage1 & theta and any(n.startswith("backbone.") for n in stage1)
    assert stage2 and stage2 <= theta


def test_without_meta_one_update_trains_everything(tmp_path):
    method, net = _method(tmp_path, "none"), _net()
    update = Updates(net)
    method.train_step(net, {"image": torch.randn(6, 3, 32, 32), "label": torch.tensor([0, 1, 3, 4, 6, 8])}, update,
                      lambda: torch.autocast("cpu", enabled=False))
    assert len(update.changed) == 1
    assert {f"head.{n}" for n in net.head.meta_parameter_names()} <= update.changed[0]


def test_pcgrad_projects_conflicting_gradients():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # conflict: a·b = -1
    out = pcgrad([[a], [b]])[0]
    a_proj = a - (a @ b) / (b @ b) * b  # [0.5, 0.5]
    b_proj = b - (b @ a) / (a @ a) * a  # [0, 1]
    torch.testing.assert_close(out, a_proj + b_proj)
    c = torch.tensor([1.0, 1.0])  # no conflict with a: plain sum
    torch.testing.assert_close(pcgrad([[a], [c]])[0], a + c)
    # shapes are kept across several tensors
    grads = pcgrad([[torch.ones(2, 2), torch.ones(3)], [-torch.ones(2, 2), torch.zeros(3)]])
    assert [g.shape for g in grads] == [(2, 2), (3,)]


def test_ours_pmg_runs_pmg_phases_then_the_erudite_stages(tmp_path):
    """Ours_PMG: one update per PMG stage (its classifier and below, never the erudite head), then
    stage I (no θ) and stage II (θ only) of the erudite step; predictions: joint head and P_mix."""
    cfg = build_config(tiny_tree(tmp_path, tmp_path, model={"head": "erudite", "erudite": {"multi_stage": True},
                                                            "multi_stage": {"stages": 2, "hidden": 16,
                                                                            "interaction": False}},
                                 method={"name": "erudite", "meta": "maml", "augment": "jigsaw"}))
    from fgvc.models import build_model

    torch.manual_seed(0)
    net = build_model(cfg, sum(GROUPS), groups=GROUPS)
    method = Erudite(cfg, sum(GROUPS))
    update = Updates(net)
    batch = {"image": torch.randn(6, 3, 32, 32), "label": torch.tensor([0, 1, 3, 4, 6, 8])}
    method.train_step(net, batch, update, lambda: torch.autocast("cpu", enabled=False))
    theta = {f"head.{n}" for n in net.head.meta_parameter_names()}
    assert len(update.changed) == 2 + 2  # two PMG phases, then the erudite stages I and II
    for n, changed in enumerate(update.changed[:2]):
        assert f"classifiers.{n}.1.weight" in changed and not any(c.startswith("head.") for c in changed)
        assert f"classifiers.{1 - n}.1.weight" not in changed
    stage1, stage2 = update.changed[2:]
    assert "head.classifier.weight" in stage1 and not stage1 & theta
    assert stage2 and stage2 <= theta
    net.eval()
    out = method.predict(net, batch)
    assert list(out) == ["joint", "mix"] and out["joint"].shape == (6, sum(GROUPS))
    torch.testing.assert_close(out["joint"], net(batch["image"]))
    torch.testing.assert_close(out["mix"], torch.stack(net.forward_all(batch["image"])).sum(0))


def test_ours_pmg_rejects_snapmix_and_hierarchical(tmp_path):
    from fgvc.errors import ConfigError

    for extra_model, extra_method in (({"hierarchical": True}, {}), ({}, {"augment": "snapmix"})):
        with pytest.raises(ConfigError, match="Ours_PMG"):
            build_config(tiny_tree(tmp_path, tmp_path,
                                   model={"head": "erudite", "erudite": {"multi_stage": True} | extra_model},
                                   method={"name": "erudite"} | extra_method))
