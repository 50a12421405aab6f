import pytest
import torch as th

from sb3_polygrad.common.returns import gae, masked_normalize


def test_gae_hand_computed():
    # H = 4 rows, 3 transitions; the second transition terminates.
    gamma, lam = 0.9, 0.5
    rewards = th.tensor([[1.0, 2.0, 3.0, 4.0]])
    values = th.tensor([[0.5, 1.0, 1.5, 2.0]])
    dones = th.tensor([[0.0, 1.0, 1.0, 1.0]])
    adv, ret, w = gae(rewards, values, dones, gamma, lam)
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    d1 = 2.0 + 0.0 - 1.0  # 1.0, terminal: no bootstrap
    d2 = 3.0 + 0.0 - 1.5  # 1.5 (padding, weight 0)
    a2 = d2
    a1 = d1  # (1 - d_1) = 0 cuts the recursion
    a0 = d0 + gamma * lam * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1, a2])
    assert ret.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 1.5])
    # The terminating transition keeps its weight; only what follows it is masked.
    assert w.tolist()[0] == [1.0, 1.0, 0.0]


def test_masked_normalize_ignores_dead_entries():
    x = th.tensor([1.0, 3.0, 100.0])
    w = th.tensor([1.0, 1.0, 0.0])
    out = masked_normalize(x, w)
    assert out[:2].tolist() == pytest.approx([-1.0, 1.0], abs=1e-6)
