"""Feature analysis: cluster metrics, MMD, MAC counts against hand counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fgvc.analysis.complexity import model_complexity
from fgvc.analysis.features import cluster_scores, mmd2


def test_cluster_scores_rank_separated_above_mixed_clusters():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    tight = centres[labels] + rng.normal(0, 0.5, (90, 2))
    mixed = rng.normal(0, 5, (90, 2))
    good, bad = cluster_scores(tight, labels), cluster_scores(mixed, labels)
    assert good["silhouette"] > 0.8 > bad["silhouette"]
    assert good["calinski_harabasz"] > bad["calinski_harabasz"]
    assert good["davies_bouldin"] < bad["davies_bouldin"]


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (200, 3)), rng.normal(0, 1, (200, 3))
    assert abs(mmd2(x, y)) < 0.02
    assert mmd2(x, y + 1.0) > mmd2(x, y + 0.3) > 10 * abs(mmd2(x, y))


class Tiny(nn.Module):
    """conv 3->4 3x3 (no padding) on 8x8, then linear 4*6*6 -> 5: hand-countable MACs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.fc = nn.Linear(4 * 6 * 6, 5, bias=False)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def test_mac_count_matches_a_hand_count():
    c = model_complexity(Tiny(), 8)
    hand = (4 * 6 * 6) * (3 * 3 * 3) + (4 * 6 * 6) * 5  # conv outputs x kernel volume + linear
    assert c["gmacs_test"] * 1e9 == pytest.approx(hand)
    assert c["params_train_m"] * 1e6 == 4 * 3 * 9 + 144 * 5 == c["params_test_m"] * 1e6
    assert torch.is_grad_enabled()
