"""The benchmark's mechanism switches: each is off by default and changes what it claims to change.

Rendering tests use ``nuisance=0`` (no pose, lighting or noise variation), so that two images drawn
from one generator differ exactly where their looks differ.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency
from sklearn.linear_model import LogisticRegression

from fgvc.data.synthetic import MULTI_DOMAINS, SynthOptions, make_genus, render, write_benchmark
from fgvc.data.synthetic.domains import Look
from fgvc.data.synthetic.geography import habitats, sample_place
from fgvc.data.synthetic.mechanisms import BADGE_COLOURS, inat_ranges, partner, species_look
from fgvc.data.synthetic.options import MECHANISMS
from fgvc.data.synthetic.seeds import image_rng, key_rng
from fgvc.errors import ConfigError
from fgvc.models.fusion import ConcatHead, DynamicMLP, FusionHead, LateFusionHead, LocationEncoder

SMALL = {"size": 32, "genera": 2, "species_per_genus": 2, "train_per_class": 2, "train_mini_per_class": 1,
         "val_per_class": 1, "domain_genera": 1, "domain_species_per_genus": 2, "domain_images_per_class": 4,
         "domains": ("flowers",)}


def test_every_switch_is_off_by_default_and_recorded_only_when_on(tmp_path):
    opts = SynthOptions()
    assert not any(getattr(opts, name) for name in MECHANISMS)
    plain = write_benchmark(tmp_path, SynthOptions(**SMALL))
    assert not set(MECHANISMS) & set(plain["options"])
    regional = write_benchmark(tmp_path, SynthOptions(**SMALL, regional_appearance=True))
    assert regional["options"]["regional_appearance"] is True  # another benchmark: the cache was rewritten
    assert json.loads((tmp_path / "synth.json").read_text()) == regional


@pytest.mark.parametrize("bad", [{"transfer_target": "dogs"},
                                 {"transfer_target": "cub", "domains": ("cars",)},
                                 {"transfer_target": "cub", "shared_cues": True},
                                 {"shared_cues": True, "domain_species_per_genus": 65}])
def test_impossible_switches_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match="synthetic option"):
        SynthOptions(**bad)


def _images(domain: str, genus, looks: list[Look], index: int, size: int = 64) -> list[np.ndarray]:
    """The looks drawn from one generator each (same background, pose and mark place), no nuisance."""
    return [render(domain, genus, look, image_rng(0, domain, 0, "train", index), size, nuisance=0.0)[0]
            for look in looks]


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 8


# ---- regional appearance (Dynamic MLP)


def test_regional_partners_share_their_range_and_swap_their_looks():
    opts = SynthOptions(regional_appearance=True)
    ranges = inat_ranges(opts)
    genus = make_genus(opts.seed, "inat", 0, opts.species_per_genus)
    for j in range(opts.species_per_genus):
        k = partner(j, opts.species_per_genus)
        assert k != j and ranges[j] is ranges[k]  # where and when never tell partners apart
        here, there = (species_look(opts, "inat", genus, j, j, 0, blob) for blob in (0, 1))
        assert here.code == genus.codes[j] and there.code == genus.codes[k]
    # in pixels: species 0 in its second region is species 1 in its first one, and not itself
    a_first, a_second, b_first = _images("inat", genus, [species_look(opts, "inat", genus, j, j, 0, blob)
                                                         for j, blob in ((0, 0), (0, 1), (1, 0))], index=3)
    assert np.array_equal(a_second, b_first) and _changed(a_first, a_second).any()
    # the default benchmark: a species keeps its look wherever it is seen
    assert species_look(SynthOptions(), "inat", genus, 0, 0, 0, blob=1).code == genus.codes[0]


def _region_features(opts: SynthOptions, per_class: int, split: int) -> tuple[torch.Tensor, ...]:
    """What an ideal image model and the true region give, per sample, drawn by the generator itself.

    Image feature: one-hot of (genus, detail code) of the look; metadata: one-hot of the region
    (the centre of the range blob the location came from).
    """
    ranges = inat_ranges(opts)
    genera = [make_genus(opts.seed, "inat", g, opts.species_per_genus) for g in range(opts.genera)]
    levels = genera[0].levels
    pool = habitats(opts.seed, 3)  # every range blob of either mode sits on one of these
    image, region, label = [], [], []
    for cls, r in enumerate(ranges):
        g, j = divmod(cls, opts.species_per_genus)
        for i in range(per_class):
            blob, _, _ = sample_place(key_rng(opts.seed, "features", cls, split, i), r)
            code = species_look(opts, "inat", genera[g], j, cls, i, blob).code
            image.append(g * levels**3 + code[0] * levels**2 + code[1] * levels + code[2])
            region.append(pool.index(r.blobs[blob][:2]))
            label.append(cls)
    return (torch.nn.functional.one_hot(torch.tensor(image), opts.genera * levels**3).float(),
            torch.nn.functional.one_hot(torch.tensor(region), 3).float(), torch.tensor(label))


def additive_bound(image: torch.Tensor, region: torch.Tensor, label: torch.Tensor) -> float:
    """An upper bound on the accuracy of any classifier ``f(image) + g(region)`` on these samples.

    Four cells (image a, region r) → A, (b, s) → A, (b, r) → B, (a, s) → B with A ≠ B cannot all be
    right: their four margins sum to zero. So each disjoint such quadruple costs its smallest cell.
    Cells must be pure (one label each), as they are here.
    """
    cells: dict[tuple[int, int], list[int]] = {}
    for a, r, y in zip(image.argmax(1).tolist(), region.argmax(1).tolist(), label.tolist(), strict=True):
        cells.setdefault((a, r), []).append(y)
    assert all(len(set(ys)) == 1 for ys in cells.values())
    lab = {cell: ys[0] for cell, ys in cells.items()}
    used: set[tuple[int, int]] = set()
    lost = 0
    for (a, r), y in sorted(lab.items()):
        for (b, s), y2 in sorted(lab.items()):
            quad = [(a, r), (b, s), (b, r), (a, s)]
            if (b, s) in used or (a, r) in used or y2 != y or a == b or r == s:
                continue
            if lab.get((b, r)) is None or lab.get((b, r)) == y or lab.get((a, s)) != lab[(b, r)]:
                continue
            if used.isdisjoint(quad):
                used.update(quad)
                lost += min(len(cells[c]) for c in quad)
    return 1 - lost / len(label)


def _fit_accuracy(train: tuple[np.ndarray, torch.Tensor], test: tuple[np.ndarray, torch.Tensor]) -> float:
    """Test accuracy of a (nearly unregularised) multinomial logistic regression: a convex fit."""
    model = LogisticRegression(C=1e4, max_iter=5000).fit(train[0], train[1].numpy())
    return float((model.predict(test[0]) == test[1].numpy()).mean())


def _additive(image: torch.Tensor, region: torch.Tensor) -> np.ndarray:
    """Linear in cat(image, region): logits f(image) + g(region), all such sums for one-hot inputs."""
    return torch.cat([image, region], 1).numpy()


def _conditioned(image: torch.Tensor, region: torch.Tensor) -> np.ndarray:
    """Linear in image ⊗ region: a separate image classifier per region."""
    return torch.einsum("ni,nr->nir", image, region).flatten(1).numpy()


@pytest.mark.parametrize("regional", [False, True])
def test_regional_appearance_bounds_additive_classifiers_not_conditioned_ones(regional):
    opts = SynthOptions(genera=3, regional_appearance=regional)
    (image, region, label), test = _region_features(opts, 40, 0), _region_features(opts, 40, 1)
    bound = additive_bound(*test)
    additive = _fit_accuracy((_additive(image, region), label), (_additive(*test[:2]), test[2]))
    conditioned = _fit_accuracy((_conditioned(image, region), label), (_conditioned(*test[:2]), test[2]))
    assert conditioned > 0.99  # the true region and an ideal reading of the image decide the species
    if not regional:  # each look means one species anywhere: adding a location score loses nothing
        assert bound == 1.0 and additive > 0.99
        return
    assert 0.6 < bound < 0.85  # about 3/4: one of the four cells of every pair's swap is lost
    assert additive <= bound + 1e-9


def test_concat_and_add_heads_are_additive_dynamic_mlp_is_not():
    """What the bound above applies to: fgvc's ConcatNet and addition heads give logits
    f(z_i) + g(meta) (the interaction contrast of two images at two places is zero); Dynamic MLP's do not."""
    torch.manual_seed(0)
    heads = {
        "concat": ConcatHead(LocationEncoder(6, 16, 16, n_res=1), 32, 5),
        "add": LateFusionHead(LocationEncoder(6, 16, 16, n_res=1), 32, 5, mode="add"),
        "dynamic_mlp": FusionHead(LocationEncoder(6, 16, 16, n_res=1), DynamicMLP(32, 16, d=16, h=8), 32, 5),
    }
    images, metas = torch.randn(2, 32), torch.randn(2, 6)
    for name, head in heads.items():
        with torch.no_grad():
            logits = {(i, m): head.eval()(images[i:i + 1], metas[m:m + 1]) for i in (0, 1) for m in (0, 1)}
        contrast = (logits[0, 0] - logits[1, 0] - logits[0, 1] + logits[1, 1]).abs().max().item()
        assert (contrast < 1e-5) == (name != "dynamic_mlp"), (name, contrast)


# ---- local evidence (RMG-PMSI)


def _diffs(opts: SynthOptions, images: int = 8) -> tuple[list[float], np.ndarray]:
    """Share of the object's box that differs between two siblings drawn alike, and where, per image."""
    genus = make_genus(0, "inat", 0, 4)
    shares, centres = [], []
    for index in range(images):
        looks = [species_look(opts, "inat", genus, j, j, index) for j in (0, 1)]
        a, b = _images("inat", genus, looks, index)
        _, box = render("inat", genus, looks[0], image_rng(0, "inat", 0, "train", index), 64, nuisance=0.0)
        changed = _changed(a, b)
        ys, xs = np.nonzero(changed)
        shares.append(changed.sum() / (box[2] * box[3]))
        centres.append((xs.mean(), ys.mean()))
    return shares, np.array(centres)


def test_local_evidence_is_small_and_moves_while_the_default_details_stay_put():
    shares, centres = _diffs(SynthOptions(local_evidence=True))
    assert all(0 < s < 0.05 for s in shares)  # a few per cent of the object
    assert centres.std(axis=0).max() > 3  # pixels: the mark is somewhere else on each image
    _, plain = _diffs(SynthOptions())
    assert plain.std(axis=0).max() < 0.5  # the default details: one place on every (unposed) image


# ---- shared cues (the erudite model) and the transfer target (CTC)


def _axis0_colour(domain: str, looks: tuple[Look, Look]) -> np.ndarray:
    """Median colour (0-1) of the second look's pixels where the two looks differ."""
    genus = make_genus(0, domain, 0, 3)
    a, b = _images(domain, genus, list(looks), index=1, size=192)  # large, so edge pixels are few
    return np.median(b[_changed(a, b)], axis=0) / 255


def test_shared_cue_looks_the_same_in_every_domain_and_domain_details_do_not():
    opts = SynthOptions(shared_cues=True)
    for domain in MULTI_DOMAINS:
        genus = make_genus(0, domain, 0, 3)
        for j, code in enumerate(genus.codes):
            look = species_look(opts, domain, genus, j, j, 0)
            assert look.badge == code[0] and look.code == (0, *code[1:])  # the first axis moved to the badge
        assert np.abs(_axis0_colour(domain, (Look((0, 0, 0), badge=0), Look((0, 0, 0), badge=1)))
                      - BADGE_COLOURS[1]).max() < 0.08
    own = np.array([_axis0_colour(d, (Look((0, 0, 0)), Look((1, 0, 0)))) for d in MULTI_DOMAINS])
    assert max(np.abs(x - y).max() for x in own for y in own) > 0.2  # without the switch: nothing alike


def test_transfer_target_cue_is_random_in_the_sources_and_decides_the_target():
    opts = SynthOptions(transfer_target="flowers")
    target = make_genus(0, "flowers", 0, 3)
    for j, code in enumerate(target.codes):
        assert {species_look(opts, "flowers", target, j, j, i).badge for i in range(20)} == {code[0]}
    for domain in ("cub", "cars", "aircraft"):
        genus = make_genus(0, domain, 0, 3)
        counts = np.zeros((3, 2))
        for j in range(3):
            for i in range(60):
                look = species_look(opts, domain, genus, j, j, i)
                assert look.code == genus.codes[j]  # the source's own details are untouched
                counts[j, look.badge] += 1
        assert counts.min() > 10 and chi2_contingency(counts).pvalue > 0.001  # unrelated to the class
    assert all(species_look(SynthOptions(), d, target, 0, 0, 0).badge is None for d in MULTI_DOMAINS)
