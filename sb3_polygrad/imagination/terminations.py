"""
Imagined trajectories ended by the task's own termination rule (``common/termination_rules.py``), applied to the
imagined states as MBPO does, around any imagination method: ``imagination_kwargs={"terminations": "env_rule"}``.

Not in the paper: this package's extension, for a world model that rarely predicts the rare falls it was trained on, so
that the actor-critic does not learn that falling is free (``docs/results.md``).
"""

from dataclasses import replace
from typing import Literal

import torch as th
from stable_baselines3.common.vec_env import VecEnv

from sb3_polygrad.common.termination_rules import RULES, TerminationRule, termination_rule
from sb3_polygrad.imagination.interface import Imagination, WorldModelImagination
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples

Terminations = Literal["world_model", "env_rule"]
TERMINATIONS: tuple[str, ...] = ("world_model", "env_rule")


class RuleTerminations(Imagination):
    """
    ``inner``'s trajectories with the terminal flags of the env's termination rule, read off the env that ``set_env``
    gives (Hopper, Walker2d, Ant, Humanoid, InvertedPendulum, and the tasks that never terminate).

    :param inner: the imagination method whose trajectories are ended by the rule
    """

    def __init__(self, inner: Imagination) -> None:
        self.inner = inner
        self.rule: TerminationRule | None = None

    def set_env(self, env: VecEnv | None) -> None:
        self.inner.set_env(env)
        self.rule = termination_rule(env) if env is not None else None
        if env is not None and self.rule is None:
            spec = env.get_attr("spec")[0]
            raise ValueError(
                f"imagination_kwargs['terminations']='env_rule' knows the termination rules of {', '.join(RULES)}, made "
                f"from their registered ids; not that of {spec.id if spec is not None else 'an env without a registered id'}"
                ": use terminations='world_model'"
            )

    @property
    def log_guidance_scale(self) -> th.Tensor | None:
        return self.inner.log_guidance_scale

    def _with_rule(self, trajectory: ImaginedTrajectory) -> ImaginedTrajectory:
        if self.rule is None:  # set_env refuses an env without a rule: there is no env here
            raise RuntimeError(
                "imagination_kwargs['terminations']='env_rule' reads the task's termination rule off its env, and this "
                "model has none: load it with env=... or call set_env(env) first"
            )
        return replace(trajectory, dones=self.rule.trajectory_dones(trajectory.observations))

    def imagine(self, start: WindowSamples, generator: th.Generator | None = None) -> ImaginedTrajectory:
        return self._with_rule(self.inner.imagine(start, generator))

    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        return self._with_rule(self.inner.imagine_from(obs0, generator))

    def adapt(self, action_std: float, action_bias: float) -> dict[str, float]:
        return self.inner.adapt(action_std, action_bias)

    def world_model_imagination(self) -> WorldModelImagination:
        return self.inner.world_model_imagination()
