"""Geo-temporal fusion: the location encoder, Dynamic MLP (A/B/C) and the baselines it is compared with.

Parameter registration order and names follow DESIGN §6.1 so that converting the authors' checkpoint
is a plain key mapping.
"""

from __future__ import annotations

import torch
from torch import nn


class ResLayer(nn.Module):
    """``x + ReLU(w2(Dropout(ReLU(w1(x)))))`` — the residual layer of the geo-prior network."""

    def __init__(self, width: int, dropout: float = 0.5):
        super().__init__()
        self.w1 = nn.Linear(width, width)
        self.w2 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.w2(self.dropout(torch.relu(self.w1(x)))))


class LocationEncoder(nn.Module):
    """The multimodal path: Linear(in→width)+ReLU, ``n_res`` residual layers, bias-free Linear(width→out).

    ``feats`` / ``class_emb`` are the names of the authors' ``loc_net`` (``feats.0`` the first Linear,
    ``feats.2..`` the residual layers), so their weights load by name.
    """

    def __init__(self, in_dim: int = 6, width: int = 256, out_dim: int = 256, n_res: int = 4,
                 dropout: float = 0.5):
        super().__init__()
        self.feats = nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(inplace=True),
                                   *[ResLayer(width, dropout) for _ in range(n_res)])
        self.class_emb = nn.Linear(width, out_dim, bias=False)
        self.out_dim = out_dim

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        return self.class_emb(self.feats(meta))
