import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from sb3_polygrad.polygrad.actor_critic import ActorCriticConfig, ImaginedActorCritic
from sb3_polygrad.polygrad.policies import PolyGRADPolicy
from sb3_polygrad.world_model.types import ImaginedTrajectory


def test_reward_scale_scales_the_critics_targets_and_keeps_the_actors_loss():
    th.manual_seed(0)
    obs_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    policy = PolyGRADPolicy(obs_space, spaces.Box(-1, 1, (2,), np.float32), lambda _: 1e-3, net_arch=[8])
    for critic in (policy.critic, policy.critic_target):
        th.nn.init.zeros_(critic.net[-1].weight)  # V = 0 everywhere: the value targets are the discounted rewards
        th.nn.init.zeros_(critic.net[-1].bias)
    traj = ImaginedTrajectory(th.randn(5, 4, 3), th.randn(5, 4, 2), th.rand(5, 4) + 0.5, th.zeros(5, 4))
    learner = ImaginedActorCritic(policy)
    actor_1, critic_1, *_ = learner.losses(traj, ActorCriticConfig())
    actor_s, critic_s, *_ = learner.losses(traj, ActorCriticConfig(reward_scale=0.1))
    assert th.isclose(critic_s, 0.01 * critic_1, rtol=1e-5)  # the targets scale by 0.1, the squared error by 0.01
    assert th.isclose(actor_s, actor_1, atol=1e-6)  # standardised advantages: the same policy gradient


def test_line_search_retries_restore_the_actor_and_its_optimiser_exactly():
    """A step with line-search retries ends where a single step at the rate the search settles on ends, from the same
    start: each retry starts from exactly the weights and Adam moments before the step, not from the previous try."""
    obs_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    th.manual_seed(0)
    traj = ImaginedTrajectory(th.randn(64, 4, 3), th.randn(64, 4, 2), th.randn(64, 4), th.zeros(64, 4))

    def fresh() -> PolyGRADPolicy:
        th.manual_seed(1)
        policy = PolyGRADPolicy(obs_space, spaces.Box(-1, 1, (2,), np.float32), lambda _: 1e-3, net_arch=[8])
        ImaginedActorCritic(policy).step(traj, ActorCriticConfig(line_search=False), 1e-3, 1e-3)  # Adam has moments
        return policy

    searched = fresh()
    stats = ImaginedActorCritic(searched).step(traj, ActorCriticConfig(target_policy_update=1e-3), 1e-1, 1.0)
    assert stats.line_search_steps > 0  # a first try 100x too large: the search retried
    single = fresh()
    ImaginedActorCritic(single).step(traj, ActorCriticConfig(line_search=False), stats.actor_learning_rate, 1.0)
    for a, b in zip(searched.actor.state_dict().values(), single.actor.state_dict().values(), strict=True):
        assert th.equal(a, b)
    for a, b in zip(searched.actor.optimizer.state.values(), single.actor.optimizer.state.values(), strict=True):
        assert all(th.equal(a[key], b[key]) for key in a)


def test_a_first_step_retried_by_the_line_search_starts_adam_afresh():
    """Before the actor's first step its optimiser has no state; a retry must start from none again (Adam's first
    step is a sign step, whatever the rate's history)."""
    obs_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    th.manual_seed(0)
    traj = ImaginedTrajectory(th.randn(64, 4, 3), th.randn(64, 4, 2), th.randn(64, 4), th.zeros(64, 4))

    def fresh() -> PolyGRADPolicy:
        th.manual_seed(1)
        return PolyGRADPolicy(obs_space, spaces.Box(-1, 1, (2,), np.float32), lambda _: 1e-3, net_arch=[8])

    searched = fresh()
    stats = ImaginedActorCritic(searched).step(traj, ActorCriticConfig(target_policy_update=1e-3), 1e-1, 1.0)
    assert stats.line_search_steps > 0
    single = fresh()
    ImaginedActorCritic(single).step(traj, ActorCriticConfig(line_search=False), stats.actor_learning_rate, 1.0)
    for a, b in zip(searched.actor.optimizer.state.values(), single.actor.optimizer.state.values(), strict=True):
        assert int(a["step"]) == int(b["step"]) == 1
    for a, b in zip(searched.actor.state_dict().values(), single.actor.state_dict().values(), strict=True):
        assert th.equal(a, b)


def _scaled_policy_and_trajectory(reward_factor: float) -> tuple[PolyGRADPolicy, ImaginedTrajectory]:
    obs_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    th.manual_seed(0)
    traj = ImaginedTrajectory(th.randn(64, 5, 3), th.randn(64, 5, 2), reward_factor * (th.rand(64, 5) + 0.5), th.zeros(64, 5))
    th.manual_seed(1)
    policy = PolyGRADPolicy(obs_space, spaces.Box(-1, 1, (2,), np.float32), lambda _: 1e-3, net_arch=[8])
    for critic in (policy.critic, policy.critic_target):  # V = 0 at first: the first targets scale with the rewards
        th.nn.init.zeros_(critic.net[-1].weight)
        th.nn.init.zeros_(critic.net[-1].bias)
    return policy, traj


def test_return_normalization_keeps_the_critics_values_when_its_statistics_move():
    policy, traj = _scaled_policy_and_trajectory(100.0)
    learner = ImaginedActorCritic(policy)
    obs = traj.observations
    before = (policy.critic(obs).clone(), policy.critic_target(obs).clone())
    _, returns, weights = learner.advantages(traj, ActorCriticConfig())
    learner.return_normalizer.update(returns, weights)
    assert policy.critic.return_mean.item() == pytest.approx(returns.mean().item(), rel=1e-5)  # the first batch sets them
    assert policy.critic.return_std.item() == pytest.approx(returns.std(unbiased=False).item(), rel=1e-4)
    learner.return_normalizer.update(3 * returns + 50, weights)  # later batches move them by a fraction
    assert policy.critic_target.return_mean.item() == policy.critic.return_mean.item() != pytest.approx(returns.mean().item())
    for critic, values in zip((policy.critic, policy.critic_target), before, strict=True):
        assert th.allclose(critic(obs), values, rtol=1e-4, atol=1e-4)


def test_normalized_returns_make_the_critics_learning_independent_of_the_reward_scale():
    """With returns normalised, rewards 1000x as large give the same steps (the critic's in its own units, the actor's
    whose advantages are standardised), so the critic reaches the same share of its targets; without, Adam moves the
    weights by about the learning rate whatever the scale, and the critic of the large rewards lags far behind."""

    def values_in_reward_units(cfg: ActorCriticConfig, factor: float) -> tuple[th.Tensor, list[th.Tensor]]:
        policy, traj = _scaled_policy_and_trajectory(factor)
        learner = ImaginedActorCritic(policy)
        for _ in range(20):
            learner.step(traj, cfg, 1e-2, 1e-2)
        steps = [p.detach().clone() for p in (*policy.critic.net.parameters(), *policy.actor.parameters())]
        return policy.critic(traj.observations).detach() / factor, steps

    normalized = ActorCriticConfig(normalize_returns=True, line_search=False)
    (small, small_steps), (large, large_steps) = (values_in_reward_units(normalized, f) for f in (1.0, 1000.0))
    assert small.abs().mean() > 0.05  # it learnt, from V = 0
    assert th.allclose(small, large, rtol=1e-3, atol=1e-3)
    for a, b in zip(small_steps, large_steps, strict=True):
        assert th.allclose(a, b, rtol=1e-3, atol=1e-4)
    plain = ActorCriticConfig(line_search=False)
    (small, _), (large, _) = (values_in_reward_units(plain, f) for f in (1.0, 1000.0))
    assert large.abs().mean() < 0.5 * small.abs().mean()


def _zero_valued_policy() -> PolyGRADPolicy:
    obs_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    th.manual_seed(1)
    policy = PolyGRADPolicy(obs_space, spaces.Box(-1, 1, (2,), np.float32), lambda _: 1e-3, net_arch=[8])
    for critic in (policy.critic, policy.critic_target):  # V = 0 everywhere: the targets are discounted reward sums
        th.nn.init.zeros_(critic.net[-1].weight)
        th.nn.init.zeros_(critic.net[-1].bias)
    return policy


def test_real_windows_add_their_weighted_critic_loss_and_leave_the_actors():
    th.manual_seed(0)
    imagined = ImaginedTrajectory(th.randn(4, 3, 3), th.randn(4, 3, 2), th.rand(4, 3), th.zeros(4, 3))
    rewards = th.tensor([[1.0, 2.0, 5.0]] * 4)
    dones = th.tensor([[0.0, 1.0, 1.0]] * 4)  # each window's second transition terminates; its third row is padding
    real = ImaginedTrajectory(th.randn(4, 3, 3), th.randn(4, 3, 2), rewards, dones)
    learner = ImaginedActorCritic(_zero_valued_policy())
    cfg = ActorCriticConfig(gamma=0.5, gae_lambda=1.0, real_vf_coef=0.25)
    actor, critic, *_, real_loss = learner.losses(imagined, cfg, real)
    plain_actor, plain_critic, *_, no_loss = learner.losses(imagined, ActorCriticConfig(gamma=0.5, gae_lambda=1.0), real)
    # targets 1 + 0.5 * 2 = 2 and 2 (the termination cuts off the padding's reward 5); weights 1 and 1
    assert no_loss is None and real_loss is not None
    assert real_loss.item() == pytest.approx(0.5 * (2.0**2 + 2.0**2) / 2)
    assert critic.item() == pytest.approx(plain_critic.item() + 0.25 * real_loss.item())
    assert actor.item() == pytest.approx(plain_actor.item())


def test_a_critic_that_learns_from_real_windows_values_the_real_rewards():
    """Imagination says every reward is 0, the env pays 1 per step: only the critic given the real windows learns that
    the states are worth something."""
    th.manual_seed(0)
    obs = th.randn(32, 4, 3)
    imagined = ImaginedTrajectory(obs, th.randn(32, 4, 2), th.zeros(32, 4), th.zeros(32, 4))
    real = ImaginedTrajectory(obs, th.randn(32, 4, 2), th.ones(32, 4), th.zeros(32, 4))

    def value_after(cfg: ActorCriticConfig) -> float:
        policy = _zero_valued_policy()
        learner = ImaginedActorCritic(policy)
        for _ in range(50):
            learner.step(imagined, cfg, 1e-3, 1e-3, real)
        return policy.critic(obs).mean().item()

    assert value_after(ActorCriticConfig(line_search=False, real_vf_coef=1.0)) > 0.3
    assert abs(value_after(ActorCriticConfig(line_search=False))) < 0.05
