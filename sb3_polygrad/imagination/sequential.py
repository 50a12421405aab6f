"""A diagnostic: the causal world model sampled one step after another (H - 1 sampler passes)."""

from typing import TYPE_CHECKING

import torch as th

from sb3_polygrad.imagination.interface import StateClipOptions, WorldModelImagination, WorldModelNeeds
from sb3_polygrad.polygrad.policies import PolyGRADPolicy
from sb3_polygrad.world_model.types import ImaginedTrajectory
from sb3_polygrad.world_model.world_model import DiffusionWorldModel

if TYPE_CHECKING:
    from sb3_polygrad.polygrad.polygrad import PolyGRAD


class SequentialImagination(WorldModelImagination):
    """
    A diagnostic: the causal world model sampled one step after another (``DiffusionWorldModel.imagine_sequential``).
    Needs ``denoiser="causal_mlp"``. Options: :class:`StateClipOptions`, the late-step state clip of the sampler it
    runs H - 1 times.

    :param world_model: a ``causal_mlp`` world model
    :param policy: the policy whose actions are sampled
    """

    options_class = StateClipOptions

    def __init__(self, world_model: DiffusionWorldModel, policy: PolyGRADPolicy) -> None:
        self.world_model = world_model
        self.policy = policy

    @classmethod
    def world_model_needs(cls, options: StateClipOptions) -> WorldModelNeeds:
        return WorldModelNeeds(causal_denoiser=True, world_model_kwargs={"sampler_kwargs": options.sampler_kwargs()})

    @classmethod
    def from_algorithm(cls, algo: "PolyGRAD", options: StateClipOptions) -> "SequentialImagination":
        return cls(algo.world_model, algo.policy)

    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        return self.world_model.imagine_sequential(obs0, self.policy, generator)
