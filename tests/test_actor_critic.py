import numpy as np
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
