"""MINE: a neural lower bound on the mutual information between two paired samples (Belghazi et al., 2018).

A statistics network ``T_φ(a, b)`` (an MLP on the concatenation) is trained by Adam to maximise the
Donsker–Varadhan bound

    I(A; B) ≥ E_P[T] − log E_{P_A ⊗ P_B}[e^T]

where the joint samples are the given pairs and the product-of-marginals samples pair each ``a``
with the ``b`` of another row (``b`` shuffled within the batch). The plain minibatch gradient of the
log term is biased; as in the paper, its denominator ``E[e^T]`` is replaced by an exponential moving
average across steps (kept in log space here, so ``e^T`` never overflows).

The estimate is the bound on a **held-out half** of the rows, never seen by the statistics network:
on the training rows a flexible network can memorise the pairing and report up to ``log N`` nats of
spurious information, on held-out rows it cannot, so the figure is an honest (noisy) lower bound. It
can be slightly negative when nothing is detectable. Both sides are standardised per column first
(mutual information does not change under invertible per-column affine maps; the network trains
better). Units: nats.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class StatisticsNetwork(nn.Module):
    """``T_φ(a, b)``: two hidden ELU layers on ``[a, b]``, one scalar per row."""

    def __init__(self, dim_a: int, dim_b: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_a + dim_b, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                 nn.Linear(hidden, 1))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.net(torch.cat([a, b], dim=1)).squeeze(1)


def _log_mean_exp(x: Tensor) -> Tensor:
    return torch.logsumexp(x, dim=0) - math.log(len(x))


def donsker_varadhan(net: StatisticsNetwork, a: Tensor, b: Tensor, b_marginal: Tensor) -> Tensor:
    """``mean T(a, b) − log mean exp T(a, b')``: the bound on one batch (``b'`` = ``b`` of other rows)."""
    return net(a, b).mean() - _log_mean_exp(net(a, b_marginal))


def _standardise(x: Tensor) -> Tensor:
    x = x.double()
    return ((x - x.mean(0)) / x.std(0).clamp_min(1e-8)).float()


@torch.no_grad()
def _held_out_bound(net: StatisticsNetwork, a: Tensor, b: Tensor, generator: torch.Generator,
                    shuffles: int) -> float:
    """The bound on held-out rows, with ``shuffles`` independent pairings for the marginal term."""
    joint = net(a, b).mean()
    marginal = torch.cat([net(a, b[torch.randperm(len(b), generator=generator)]) for _ in range(shuffles)])
    return float(joint - _log_mean_exp(marginal))


def mine_estimate(a: Tensor, b: Tensor, steps: int = 1000, hidden: int = 64, batch_size: int = 256,
                  lr: float = 1e-3, ema_rate: float = 0.01, seed: int = 0, shuffles: int = 8) -> float:
    """MINE estimate of ``I(A; B)`` in nats from paired rows ``a [N, Da]`` and ``b [N, Db]``.

    Half of the rows (a seeded random half) train the statistics network for ``steps`` Adam steps of
    ``batch_size`` pairs; the other half gives the estimate. The same inputs and ``seed`` give the same
    figure on the same machine; the caller's global RNG state is left untouched.
    """
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"expected paired rows [N, Da] and [N, Db], got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < 8:
        raise ValueError(f"MINE needs at least 8 paired rows, got {len(a)}")
    a, b = _standardise(a), _standardise(b)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(a), generator=generator)
    train, held = order[: len(a) // 2], order[len(a) // 2:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = StatisticsNetwork(a.shape[1], b.shape[1], hidden)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    batch = min(batch_size, len(train))
    log_ema = None  # log of the moving average of E[e^T] over product-of-marginals batches
    for _ in range(steps):
        idx = train[torch.randperm(len(train), generator=generator)[:batch]]
        a_b, b_b = a[idx], b[idx]
        b_marginal = b_b[torch.randperm(batch, generator=generator)]
        joint = net(a_b, b_b).mean()
        log_mean = _log_mean_exp(net(a_b, b_marginal))
        with torch.no_grad():
            log_ema = log_mean.detach() if log_ema is None else torch.logaddexp(
                log_ema + math.log1p(-ema_rate), log_mean.detach() + math.log(ema_rate))
        # d/dφ exp(log_mean − log_ema) = ∇E[e^T] / EMA: the paper's bias-corrected gradient of log E[e^T]
        loss = -(joint - torch.exp(log_mean - log_ema))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    net.eval()
    return _held_out_bound(net, a[held], b[held], generator, shuffles)
