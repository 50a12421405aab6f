"""Actor-critic policy of PolyGRAD: a Gaussian actor whose log-likelihood gradient in the actions guides the sampler."""

import copy
import math
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn


def layer_norm_mlp(in_dim: int, hidden: list[int], out_dim: int, activation_fn: type[nn.Module]) -> nn.Sequential:
    """``Linear -> LayerNorm(eps 1e-3) -> activation`` per hidden layer, then a linear output (the reference's MLP)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.LayerNorm(width, eps=1e-3), activation_fn()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """
    Diagonal Gaussian policy with mean ``tanh(net(s))`` and a state-independent std ``exp(log_std) + min_std``.

    The distribution is not squashed: samples may leave [-1, 1], and the env receives them clipped (section 2.3).

    :param obs_dim: size of an observation
    :param action_dim: size of an action
    :param net_arch: hidden layer sizes
    :param activation_fn: activation after each LayerNorm
    :param init_std: initial standard deviation
    :param min_std: floor of the standard deviation
    """

    optimizer: th.optim.Optimizer

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        init_std: float = 1.0,
        min_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.min_std = min_std
        self.net = layer_norm_mlp(obs_dim, net_arch, action_dim, activation_fn)
        self.log_std = nn.Parameter(th.full((action_dim,), math.log(init_std - min_std)))

    def std(self) -> th.Tensor:
        """Standard deviation of every action dimension, shape (A,)."""
        return self.log_std.exp() + self.min_std

    def fix_std(self, std: float) -> None:
        """
        Set every action dimension's std to ``std`` and stop learning it: the optimiser skips a parameter without a
        gradient, so only the caller moves it from then on.

        :param std: the standard deviation, above ``min_std``
        """
        if not std > self.min_std:
            raise ValueError(f"a fixed action std ({std}) must exceed min_std ({self.min_std})")
        self.log_std.requires_grad_(False)
        self.log_std.fill_(math.log(std - self.min_std))

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:param observations: raw observations, shape (..., O)
        :return: mean and std of the actions, each shape (..., A)"""
        mean = th.tanh(self.net(observations))
        return mean, self.std().expand_as(mean)

    def log_prob(self, observations: th.Tensor, actions: th.Tensor, censored: bool = False) -> th.Tensor:
        """
        :param observations: raw observations, shape (..., O)
        :param actions: actions in scaled units, shape (..., A)
        :param censored: score an action past [-1, 1] by the probability of being clipped to that bound, as the env
            clips it, instead of by the Gaussian density (the log-likelihood of the action the env actually takes)
        :return: ``log pi(actions | observations)`` summed over action dimensions, shape (...,)
        """
        mean, std = self.action_distribution_params(observations)
        log_prob = th.distributions.Normal(mean, std).log_prob(actions)
        if censored:
            above = th.special.log_ndtr((mean - 1.0) / std)  # log P(a >= 1)
            below = th.special.log_ndtr((-1.0 - mean) / std)  # log P(a <= -1)
            log_prob = th.where(actions >= 1.0, above, th.where(actions <= -1.0, below, log_prob))
        return log_prob.sum(dim=-1)

    def entropy(self) -> th.Tensor:
        """Analytic entropy of the Gaussian (state-independent), a scalar."""
        return (0.5 + 0.5 * math.log(2 * math.pi) + self.std().log()).sum()


class Critic(nn.Module):
    """
    State-value function ``V(s)`` on raw observations: ``V(s) = mean + std * net(s)``, where ``mean`` and ``std`` are
    the running statistics of the returns when the actor-critic normalises them (``ReturnNormalizer``), else 0 and 1.

    :param obs_dim: size of an observation
    :param net_arch: hidden layer sizes
    :param activation_fn: activation after each LayerNorm
    """

    optimizer: th.optim.Optimizer
    return_mean: th.Tensor
    return_std: th.Tensor
    return_second_moment: th.Tensor

    def __init__(self, obs_dim: int, net_arch: list[int], activation_fn: type[nn.Module]) -> None:
        super().__init__()
        self.net = layer_norm_mlp(obs_dim, net_arch, 1, activation_fn)
        self.register_buffer("return_mean", th.tensor(0.0))
        self.register_buffer("return_std", th.tensor(1.0))
        self.register_buffer("return_second_moment", th.tensor(-1.0))  # negative: no returns seen yet

    def normalized(self, observations: th.Tensor) -> th.Tensor:
        """:param observations: raw observations, shape (..., O)
        :return: values in the units of the normalised returns, shape (...,)"""
        return self.net(observations).squeeze(-1)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        """:param observations: raw observations, shape (..., O)
        :return: values, shape (...,)"""
        return self.normalized(observations) * self.return_std + self.return_mean


class PolyGRADPolicy(BasePolicy):
    """
    Actor, critic and the critic's EMA target, each an MLP with LayerNorm and ELU on raw observations (section 2.3).

    Actions are in SB3's scaled units ([-1, 1] maps to the action-space bounds); ``predict`` clips and unscales them.

    :param observation_space: observation space (a 1-D ``Box``)
    :param action_space: action space (a ``Box``)
    :param lr_schedule: learning rate schedule of the actor (its current value caps the adaptive actor learning rate)
    :param net_arch: hidden sizes, shared by actor and critic (a list) or ``dict(pi=[...], vf=[...])``
    :param activation_fn: activation function
    :param init_std: initial standard deviation of the actions
    :param min_std: floor of the standard deviation
    :param optimizer_class: optimiser of actor and critic (reference: AdamW)
    :param optimizer_kwargs: extra keyword arguments of the optimiser
    """

    actor: Actor
    critic: Critic
    critic_target: Critic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ELU,
        init_std: float = 1.0,
        min_std: float = 0.1,
        optimizer_class: type[th.optim.Optimizer] = th.optim.AdamW,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,  # predict() unscales from [-1, 1]; _predict clips to it
        )
        if init_std <= min_std or min_std < 0:
            raise ValueError(f"init_std ({init_std}) must exceed min_std ({min_std}) >= 0")
        net_arch = [256, 256] if net_arch is None else net_arch
        pi_arch, vf_arch = (net_arch["pi"], net_arch["vf"]) if isinstance(net_arch, dict) else (net_arch, net_arch)
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.init_std = init_std
        self.min_std = min_std
        obs_dim = int(np.prod(observation_space.shape))  # type: ignore[arg-type]
        action_dim = int(np.prod(action_space.shape))
        self.actor = Actor(obs_dim, action_dim, pi_arch, activation_fn, init_std, min_std)
        self.critic = Critic(obs_dim, vf_arch, activation_fn)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # The critic's rate is set by the algorithm at every step; lr_schedule(1) is only a starting value.
        self.actor.optimizer = self.optimizer_class(
            self.actor.parameters(),
            lr=lr_schedule(1),
            **self.optimizer_kwargs,  # type: ignore[call-arg]
        )
        self.critic.optimizer = self.optimizer_class(
            self.critic.parameters(),
            lr=lr_schedule(1),
            **self.optimizer_kwargs,  # type: ignore[call-arg]
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        del data["normalize_images"]  # flat observations only
        data.update(
            lr_schedule=self._dummy_schedule,  # only needed to build optimisers, which a loaded policy does not restore
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            init_std=self.init_std,
            min_std=self.min_std,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )
        return data

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:param observations: raw observations, shape (..., O)
        :return: mean and std of the actions in scaled units, each shape (..., A)"""
        return self.actor.action_distribution_params(observations)

    def sample_actions(self, observations: th.Tensor) -> th.Tensor:
        """Unclipped samples in scaled units, shape (B, A): what is stored in the replay buffer (section 2.3)."""
        mean, std = self.actor.action_distribution_params(observations)
        return mean + std * th.randn_like(mean)

    def predict_values(self, observations: th.Tensor) -> th.Tensor:
        """:return: the critic's values of raw observations, shape (...,)"""
        return self.critic(observations)

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        assert isinstance(observation, th.Tensor)
        mean, std = self.actor.action_distribution_params(observation.float())
        actions = mean if deterministic else mean + std * th.randn_like(mean)
        return actions.clamp(-1.0, 1.0)

    def set_training_mode(self, mode: bool) -> None:
        self.actor.train(mode)
        self.critic.train(mode)
        self.training = mode


MlpPolicy = PolyGRADPolicy
