"""
What an imagination method is to PolyGRAD: how real start windows become the trajectories its actor-critic learns from,
what the method needs of the world model, and how it is built from the algorithm with its own options.

PolyGRAD asks a method class for the names of its options (``option_names``), parses them (``parse_options``), builds
its world model with what the method needs (``world_model_needs``), then builds the method (``from_algorithm``) and
shows it the env (``set_env``, again on ``PolyGRAD.set_env``). In training it calls ``imagine`` and ``adapt`` only.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch as th
from stable_baselines3.common.vec_env import VecEnv

from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples

if TYPE_CHECKING:  # the algorithm builds its methods: only the annotations refer to it
    from sb3_polygrad.polygrad.polygrad import PolyGRAD

ImaginationT = TypeVar("ImaginationT", bound="Imagination")


@dataclass(frozen=True)
class NoOptions:
    """The options of a method that takes none."""


@dataclass(frozen=True)
class WorldModelNeeds:
    """
    What an imagination method needs of PolyGRAD's world model.

    :param causal_denoiser: a denoiser whose states see only the actions before them (``causal_mlp``)
    :param world_model_kwargs: ``DiffusionWorldModel`` keyword arguments the method sets (a user's
        ``world_model_kwargs`` may repeat them, not contradict them)
    """

    causal_denoiser: bool = False
    world_model_kwargs: dict[str, Any] = field(default_factory=dict)


class Imagination(ABC):
    """
    How real start windows become the trajectories the actor-critic learns from. A subclass that sets
    ``options_class`` (a dataclass whose fields, with their defaults, are the method's options in ``imagination_kwargs``)
    and implements ``from_algorithm``, ``imagine`` and ``world_model_imagination`` can be passed as
    ``PolyGRAD(imagination=...)``.
    """

    options_class: ClassVar[type] = NoOptions

    @classmethod
    def option_names(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """
        :param options: the method's options as given (a method whose options depend on one of them reads it)
        :return: the names of the options the method takes
        """
        return tuple(f.name for f in fields(cls.options_class))

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> Any:
        """
        :param options: the method's options, their names among ``option_names``
        :return: the options object that ``world_model_needs`` and ``from_algorithm`` take
        """
        return cls.options_class(**options)

    @classmethod
    def world_model_needs(cls, options: Any) -> WorldModelNeeds:
        """
        :param options: as ``parse_options`` returns them
        :return: what the method needs of the world model (nothing, unless a method says otherwise)
        """
        return WorldModelNeeds()

    @classmethod
    def from_algorithm(cls: type[ImaginationT], algo: "PolyGRAD", options: Any) -> ImaginationT:
        """
        Build the method. Every method implements it; a wrapper (``RuleTerminations``) is built around a built method.

        :param algo: the algorithm, its world model and policy built
        :param options: as ``parse_options`` returns them
        :return: the method, ready to imagine
        """
        raise NotImplementedError(f"{cls.__name__} does not build itself from the algorithm: implement from_algorithm")

    def set_env(self, env: VecEnv | None) -> None:  # noqa: B027 (a hook that most methods leave empty)
        """
        Take the algorithm's env (``None``: a model loaded without one); a method that cannot run with it raises a
        ``ValueError``. Nothing to do, unless a method says otherwise.

        :param env: the algorithm's env
        """

    @property
    def log_guidance_scale(self) -> th.Tensor | None:
        """``log g``, the guidance scale the method tunes, a 0-d tensor saved with the algorithm; None: it has none."""
        return None

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
        """The world model's imagination, with its own terminal flags: this one, or, for a method that does not use the
        world model, the one it stands in for (whose open-loop error against the simulator is logged as
        ``world_model/*``)."""

    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        """
        The world model's imagination from start states alone, as the actor-critic gets it (``PolyGRAD.imagine``).

        :param obs0: raw start states, shape (B, O)
        :param generator: random generator for reproducible samples
        :return: trajectories of the world model's horizon, in raw units
        """
        return self.world_model_imagination().imagine_from(obs0, generator)


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


@dataclass(frozen=True)
class StateClipOptions:
    """
    The options of the world model's samplers that every world-model imagination uses: the late-step state clip.

    :param state_change_clip: limit of the per-step change of the window in the last denoising steps (``None``: off)
    :param state_change_clip_steps: the clip applies while the diffusion step ``t < state_change_clip_steps``
        (``None``: the reference's ``t <= 10`` at N = 128, scaled to N)
    """

    state_change_clip: float | None = 0.25
    state_change_clip_steps: int | None = None

    def sampler_kwargs(self) -> dict[str, Any]:
        """:return: the world model's ``sampler_kwargs`` (``PolicyGuidedSampler``), which the closed-loop sampler
        shares"""
        return {"state_change_clip": self.state_change_clip, "state_change_clip_steps": self.state_change_clip_steps}
