"""Pure math of the actor-critic on imagined trajectories: GAE(lambda) with masks from imagined terminals.

Shape letters: ``B`` batch, ``H`` horizon; the H-1 transitions k = 0..H-2 are learned from, s_{H-1} only bootstraps.
"""

import torch as th


def gae(
    rewards: th.Tensor, values: th.Tensor, dones: th.Tensor, gamma: float, gae_lambda: float
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """
    GAE(lambda) advantages, value targets and loss weights of imagined trajectories (section 3.4).

    ``delta_k = r_k + gamma (1 - d_k) V(s_{k+1}) - V(s_k)``, ``A_k = delta_k + gamma lambda (1 - d_k) A_{k+1}``,
    ``R_k = A_k + V(s_k)``. The weight of transition k is ``prod_{j<k} (1 - d_j)``: it is alive until, and including,
    the transition that terminates. (The reference's mask ``prod_{j<=k}`` also drops the terminating transition, whose
    reward and action are real: that is a bug, fixed here.)

    :param rewards: r_k, shape (B, H)
    :param values: V(s_k) from the target critic, shape (B, H)
    :param dones: d_k in {0, 1}, shape (B, H)
    :param gamma: discount factor
    :param gae_lambda: GAE lambda
    :return: advantages (B, H-1), value targets (B, H-1), weights (B, H-1)
    """
    not_done = 1.0 - dones[:, :-1]  # (B, H-1)
    deltas = rewards[:, :-1] + gamma * not_done * values[:, 1:] - values[:, :-1]
    advantages = th.zeros_like(deltas)
    last = th.zeros_like(deltas[:, 0])
    for k in reversed(range(deltas.shape[1])):
        last = deltas[:, k] + gamma * gae_lambda * not_done[:, k] * last
        advantages[:, k] = last
    alive_before = th.cumprod(th.cat([th.ones_like(not_done[:, :1]), not_done[:, :-1]], dim=1), dim=1)
    return advantages, advantages + values[:, :-1], alive_before


def masked_normalize(x: th.Tensor, weights: th.Tensor, eps: float = 1e-8) -> th.Tensor:
    """Standardise ``x`` with the mean and std of its weighted (alive) entries only; shapes equal.

    The reference normalises over all entries, dead ones included, which shifts live advantages by the dead ones' zeros."""
    total = weights.sum().clamp(min=1.0)
    mean = (x * weights).sum() / total
    var = ((x - mean).square() * weights).sum() / total
    return (x - mean) / (var.sqrt() + eps)
