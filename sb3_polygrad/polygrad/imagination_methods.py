"""
Where PolyGRAD's actor-critic gets its trajectories: interchangeable imagination methods behind one small interface.

``PolyGRAD(imagination=...)`` picks one by name (``IMAGINATIONS``); ``PolyGRAD.train()`` only calls ``imagine`` and
``adapt``, whatever the method.

- ``"guided"``: the paper's policy-guided sampler, with its guidance-scale tuner.
- ``"closed_loop"``: this package's extension, one staggered diffusion pass whose actions are the policy's own samples
  (``world_model/closed_loop_sampler.py``).
- ``"sequential"``: a diagnostic, the causal world model sampled one step after another (H - 1 sampler passes).
- ``"simulator"``: a diagnostic, the policy's rollouts in the simulator itself (a perfect world model).
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch as th

from sb3_polygrad.common.simulator import simulator_rollouts
from sb3_polygrad.polygrad.policies import PolyGRADPolicy
from sb3_polygrad.world_model.guidance_tuning import tune_guidance_scale
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples
from sb3_polygrad.world_model.world_model import DiffusionWorldModel

ImaginationName = Literal["guided", "closed_loop", "sequential", "simulator"]


class Imagination(ABC):
    """How real start windows become the trajectories the actor-critic learns from."""

    @abstractmethod
    def imagine(self, start: WindowSamples, generator: th.Generator | None = None) -> ImaginedTrajectory:
        """
        :param start: real windows; their first states (and simulator states) start the trajectories
        :param generator: random generator for reproducible samples
        :return: trajectories of the world model's horizon, in raw units
        """

    def adapt(self, action_std: float, action_bias: float) -> dict[str, float]:
        """
        Adapt to how on-policy the last trajectories' actions were (:func:`standardized_action_stats`).

        :param action_std: standardised std of the imagined actions (1 for policy samples)
        :param action_bias: standardised bias of the imagined actions (0 for policy samples)
        :return: figures to log, by name under ``train/``
        """
        return {}

    @abstractmethod
    def world_model_imagination(self) -> "WorldModelImagination":
        """The world model's imagination: this one, or, for a method that does not use the world model, the one it
        stands in for (whose open-loop error against the simulator is logged as ``world_model/*``)."""


class WorldModelImagination(Imagination):
    """An imagination of the world model: it needs only the start states of the windows."""

    def imagine(self, start: WindowSamples, generator: th.Generator | None = None) -> ImaginedTrajectory:
        return self.imagine_from(start.observations[:, 0], generator)

    @abstractmethod
    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        """
        :param obs0: raw start states, shape (B, O)
        :param generator: random generator for reproducible samples
        :return: trajectories of the world model's horizon, in raw units
        """

    def world_model_imagination(self) -> "WorldModelImagination":
        return self


class GuidedImagination(WorldModelImagination):
    """
    The paper's imagination: the policy-guided sampler (section 1.4), and the tuner of its guidance scale g (section
    1.5, ``world_model/guidance_tuning.py``).

    :param world_model: the diffusion world model
    :param policy: the policy that guides the sampler
    :param log_guidance_scale: ``log g``, a 0-d tensor the method updates in place (saved with the algorithm)
    :param tune: adapt g toward imagined actions of standardised std 1
    :param learning_rate: SGD rate on ``log g``
    """

    def __init__(
        self,
        world_model: DiffusionWorldModel,
        policy: PolyGRADPolicy,
        log_guidance_scale: th.Tensor,
        tune: bool = True,
        learning_rate: float = 3e-3,
    ) -> None:
        self.world_model = world_model
        self.policy = policy
        self.log_guidance_scale = log_guidance_scale
        self.tune = tune
        self.learning_rate = learning_rate

    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        return self.world_model.imagine(obs0, self.policy, self.log_guidance_scale.exp().item(), generator)

    def adapt(self, action_std: float, action_bias: float) -> dict[str, float]:
        if self.tune:
            tune_guidance_scale(self.log_guidance_scale, action_std, self.policy.actor.std().max().item(), self.learning_rate)
        return {"guidance_scale": self.log_guidance_scale.exp().item()}


class ClosedLoopImagination(WorldModelImagination):
    """
    This package's extension: one staggered pass of the causal world model in which every action is the policy's own
    sample at the state it is taken in (``DiffusionWorldModel.imagine_closed_loop``).

    :param world_model: a ``causal_mlp`` world model trained with ``per_row_noise=True``
    :param policy: the policy whose actions are sampled
    :param row_lag: iterations by which each row's denoising lags the row before it
    """

    def __init__(self, world_model: DiffusionWorldModel, policy: PolyGRADPolicy, row_lag: float = 1.0) -> None:
        self.world_model = world_model
        self.policy = policy
        self.row_lag = row_lag

    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        return self.world_model.imagine_closed_loop(obs0, self.policy, self.row_lag, generator)


class SequentialImagination(WorldModelImagination):
    """
    A diagnostic: the causal world model sampled one step after another (``DiffusionWorldModel.imagine_sequential``).

    :param world_model: a ``causal_mlp`` world model
    :param policy: the policy whose actions are sampled
    """

    def __init__(self, world_model: DiffusionWorldModel, policy: PolyGRADPolicy) -> None:
        self.world_model = world_model
        self.policy = policy

    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        return self.world_model.imagine_sequential(obs0, self.policy, generator)


class SimulatorImagination(Imagination):
    """
    A diagnostic: the policy's own rollouts in the simulator from the recorded start states (a perfect world model).
    The world model still trains; ``world_model/*`` then measures ``evaluated``, the imagination it would have used.

    :param make_envs: builds ``n`` fresh simulator envs (an empty list where the env is not a registered MuJoCo env)
    :param policy: the policy whose actions are sampled
    :param action_low: lower bounds of the env's actions
    :param action_high: upper bounds of the env's actions
    :param evaluated: the world-model imagination measured by ``world_model/*``
    """

    def __init__(
        self,
        make_envs: Callable[[int], list],
        policy: PolyGRADPolicy,
        action_low: np.ndarray,
        action_high: np.ndarray,
        evaluated: WorldModelImagination,
    ) -> None:
        self.make_envs = make_envs
        self.policy = policy
        self.action_low = action_low
        self.action_high = action_high
        self.evaluated = evaluated
        self._envs: list = []

    def imagine(self, start: WindowSamples, generator: th.Generator | None = None) -> ImaginedTrajectory:
        obs0 = start.observations[:, 0]
        if len(self._envs) < obs0.shape[0]:
            self._envs = self.make_envs(obs0.shape[0])
        if start.sim_states is None or not self._envs:
            raise ValueError("imagination='simulator' needs a MuJoCo env built from a registered id")
        return simulator_rollouts(
            self._envs,
            self.policy.sample_actions,
            obs0,
            start.sim_states[:, 0].cpu().numpy(),
            start.observations.shape[1],
            self.action_low,
            self.action_high,
        )

    def world_model_imagination(self) -> WorldModelImagination:
        return self.evaluated


IMAGINATIONS: tuple[str, ...] = ("guided", "closed_loop", "sequential", "simulator")
