"""A diagnostic: the policy's own rollouts in the simulator from the recorded start states (a perfect world model)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.vec_env import VecEnv

from sb3_polygrad.common.simulator import make_simulator_env, simulator_rollouts
from sb3_polygrad.imagination.closed_loop import ClosedLoopImagination
from sb3_polygrad.imagination.guided import GuidedImagination
from sb3_polygrad.imagination.interface import Imagination, WorldModelImagination, WorldModelNeeds
from sb3_polygrad.imagination.sequential import SequentialImagination
from sb3_polygrad.polygrad.policies import PolyGRADPolicy
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples

if TYPE_CHECKING:
    from sb3_polygrad.polygrad.polygrad import PolyGRAD

# The world model's imaginations, by name: what a simulator run can stand in for.
WORLD_MODEL_IMAGINATIONS: dict[str, type[WorldModelImagination]] = {
    "guided": GuidedImagination,
    "closed_loop": ClosedLoopImagination,
    "sequential": SequentialImagination,
}


@dataclass(frozen=True)
class SimulatorOptions:
    """
    The options of simulator imagination, ``PolyGRAD(imagination="simulator", imagination_kwargs=...)``: ``evaluated``
    (default ``"guided"``), the world model's imagination it stands in for, and that method's own options.

    :param evaluated: the world-model imagination whose world model trains and whose open-loop error is logged
    :param evaluated_options: its options
    """

    evaluated: type[WorldModelImagination]
    evaluated_options: Any


class SimulatorImagination(Imagination):
    """
    A diagnostic: the policy's own rollouts in the simulator from the recorded start states (a perfect world model).
    The world model still trains, as ``evaluated`` needs it; ``world_model/*`` then measures ``evaluated``, the
    imagination it would have used. Needs a MuJoCo env built from a registered id. Options: :class:`SimulatorOptions`.

    :param make_envs: builds ``n`` fresh simulator envs (an empty list where the env is not a registered MuJoCo env)
    :param policy: the policy whose actions are sampled
    :param action_low: lower bounds of the env's actions
    :param action_high: upper bounds of the env's actions
    :param evaluated: the world-model imagination measured by ``world_model/*``
    """

    def __init__(
        self,
        make_envs: Callable[[int], list[gym.Env]],
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
        self._envs: list[gym.Env] = []

    @staticmethod
    def _evaluated(options: Mapping[str, Any]) -> type[WorldModelImagination]:
        name = options.get("evaluated", "guided")
        if name not in WORLD_MODEL_IMAGINATIONS:
            raise ValueError(f"imagination_kwargs['evaluated'] must be one of {tuple(WORLD_MODEL_IMAGINATIONS)}, got {name!r}")
        return WORLD_MODEL_IMAGINATIONS[name]

    @classmethod
    def option_names(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        own = {key: value for key, value in options.items() if key != "evaluated"}
        return ("evaluated", *cls._evaluated(options).option_names(own))

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> SimulatorOptions:
        evaluated = cls._evaluated(options)
        own = {key: value for key, value in options.items() if key != "evaluated"}
        return SimulatorOptions(evaluated, evaluated.parse_options(own))

    @classmethod
    def world_model_needs(cls, options: SimulatorOptions) -> WorldModelNeeds:
        return options.evaluated.world_model_needs(options.evaluated_options)

    @classmethod
    def from_algorithm(cls, algo: "PolyGRAD", options: SimulatorOptions) -> "SimulatorImagination":
        def make_envs(n: int) -> list[gym.Env]:
            assert algo.env is not None  # imagination runs in training, with an env
            envs = [make_simulator_env(algo.env, algo.seed) for _ in range(n)]
            return [env for env in envs if env is not None]

        evaluated = options.evaluated.from_algorithm(algo, options.evaluated_options)
        space = algo.action_space
        assert isinstance(space, gym.spaces.Box)  # PolyGRAD refuses other action spaces
        return cls(make_envs, algo.policy, space.low, space.high, evaluated)

    def set_env(self, env: VecEnv | None) -> None:
        if env is not None and not env.has_attr("state_vector"):
            raise ValueError("imagination='simulator' rolls out the policy in the simulator: it needs a MuJoCo env")
        self._envs = []  # made again, for the new env's task
        self.evaluated.set_env(env)

    @property
    def log_guidance_scale(self) -> th.Tensor | None:
        return self.evaluated.log_guidance_scale

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
