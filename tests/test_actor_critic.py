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
