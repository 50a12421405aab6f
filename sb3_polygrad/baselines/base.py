"""
The interface every world model of the comparison shares, and the one-step rollout the autoregressive ones use.

Shape letters: ``B`` batch, ``H`` horizon (rows of a trajectory, s_0..s_{H-1}), ``O`` obs dim, ``A`` action dim.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch as th
from torch import nn

from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.sampler import GuidancePolicy
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples

# One model step: given the states (B, k+1, O) and actions (B, k+1, A) so far, predict the next state (B, O) and the
# reward (B,) and terminal flag (B,) of the last step.
StepFunction = Callable[[th.Tensor, th.Tensor], tuple[th.Tensor, th.Tensor, th.Tensor]]


class ComparisonWorldModel(nn.Module, ABC):
    """
    A world model trained on real windows and imagining trajectories under a policy, in raw units.

    Every model owns a ``TransitionNormalizer`` fitted on the same real transitions, and its optimiser; the experiment
    feeds each one windows of ``train_horizon`` rows from the same ``PolyGRADReplayBuffer.sample_windows``.

    :param obs_dim: O
    :param action_dim: A
    :param train_horizon: rows of the real windows ``train_step`` takes
    """

    def __init__(self, obs_dim: int, action_dim: int, train_horizon: int) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.train_horizon = train_horizon

    @property
    @abstractmethod
    def normalizer(self) -> TransitionNormalizer:
        """The statistics the model normalises its inputs and targets with."""

    def update_normalizer(self, observations: th.Tensor, actions: th.Tensor, rewards: th.Tensor, terminals: th.Tensor) -> None:
        """
        Merge real transitions (no padding) into the normaliser's statistics.

        :param observations: shape (N, O)
        :param actions: shape (N, A)
        :param rewards: shape (N,)
        :param terminals: shape (N,)
        """
        self.normalizer.update(observations, actions, rewards, terminals)

    @abstractmethod
    def train_step(self, batch: WindowSamples) -> dict[str, float]:
        """
        One optimiser step on real windows.

        :param batch: windows of ``train_horizon`` rows, raw units
        :return: scalars to log
        """

    @abstractmethod
    def imagine(self, start_states: th.Tensor, policy: GuidancePolicy, horizon: int) -> ImaginedTrajectory:
        """
        Imagine trajectories that follow ``policy`` from real start states.

        :param start_states: raw states, shape (B, O)
        :param policy: the policy whose actions the trajectories follow
        :param horizon: H, rows of each trajectory (the start state and H - 1 imagined steps)
        :return: trajectories of H rows, raw units; ``rewards[:, k]`` and ``dones[:, k]`` belong to the step from row k
        """

    def supports_horizon(self, horizon: int) -> bool:
        """:param horizon: H
        :return: whether ``imagine`` can produce trajectories of H rows"""
        return horizon >= 1

    def adapt_to_policy(self, start_states: th.Tensor, policy: GuidancePolicy) -> dict[str, float]:
        """
        Adjust whatever the model tunes to the policy between training steps (nothing, unless overridden).

        :param start_states: raw states to imagine from, shape (B, O)
        :param policy: the policy of the experiment
        :return: scalars to log
        """
        return {}


def sample_actions(policy: GuidancePolicy, observations: th.Tensor) -> th.Tensor:
    """:param policy: a Gaussian policy
    :param observations: raw states, shape (..., O)
    :return: one sample of the policy's actions, shape (..., A)"""
    mean, std = policy.action_distribution_params(observations)
    return mean + std * th.randn_like(mean)


@th.no_grad()
def one_step_rollout(start_states: th.Tensor, policy: GuidancePolicy, horizon: int, step: StepFunction) -> ImaginedTrajectory:
    """
    The autoregressive loop of the one-step models: sample ``a_k ~ pi(s_k)``, predict ``(s_{k+1}, r_k, d_k)``, repeat.

    Each of the H rows costs one model step, the last one only for its reward and terminal (its next state is dropped),
    as the reference's autoregressive rollouts do.

    :param start_states: raw start states, shape (B, O)
    :param policy: the policy that picks the actions
    :param horizon: H, rows of each trajectory
    :param step: the model's step function (see ``StepFunction``)
    :return: trajectories of H rows, raw units
    """
    batch = start_states.shape[0]
    states = start_states.new_zeros(batch, horizon + 1, start_states.shape[1])  # s_0..s_H
    states[:, 0] = start_states
    first_action = sample_actions(policy, start_states)
    actions = first_action.new_zeros(batch, horizon, first_action.shape[-1])  # (B, H, A)
    rewards, dones = start_states.new_zeros(batch, horizon), start_states.new_zeros(batch, horizon)
    for k in range(horizon):
        actions[:, k] = first_action if k == 0 else sample_actions(policy, states[:, k])
        states[:, k + 1], rewards[:, k], dones[:, k] = step(states[:, : k + 1], actions[:, : k + 1])
    return ImaginedTrajectory(observations=states[:, :horizon], actions=actions, rewards=rewards, dones=dones)
