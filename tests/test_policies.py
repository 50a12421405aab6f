import torch as th
from torch import nn

from sb3_polygrad.polygrad.policies import Actor


def actor() -> Actor:
    th.manual_seed(0)
    return Actor(obs_dim=3, action_dim=2, net_arch=[8], activation_fn=nn.ELU, init_std=0.5)


def test_censored_log_prob_is_the_density_inside_and_the_clip_probability_outside():
    policy = actor()
    obs = th.randn(4, 3)
    mean, std = policy.action_distribution_params(obs)
    inside = th.rand(4, 2) * 1.8 - 0.9
    assert th.allclose(policy.log_prob(obs, inside, censored=True), policy.log_prob(obs, inside))
    # Past a bound every action counts as the bound: the same score however far past, the log of the clip probability.
    normal = th.distributions.Normal(mean, std)
    for far in [1.0, 1.5, 4.0]:
        above = th.full((4, 2), far)
        expected = (1 - normal.cdf(th.ones(4, 2))).log().sum(-1)
        assert th.allclose(policy.log_prob(obs, above, censored=True), expected, atol=1e-5)
        below = -above
        expected = normal.cdf(-th.ones(4, 2)).log().sum(-1)
        assert th.allclose(policy.log_prob(obs, below, censored=True), expected, atol=1e-5)


def test_censored_log_prob_gradient_stays_finite_far_past_the_bound():
    policy = actor()
    obs = th.randn(4, 3)
    policy.log_prob(obs, th.full((4, 2), 50.0), censored=True).sum().backward()
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert grads and all(th.isfinite(g).all() for g in grads)
