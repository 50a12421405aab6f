import inspect
import re

import pytest

from sb3_polygrad import PolyGRAD, PolyGRADPolicy
from sb3_polygrad.buffers import PolyGRADReplayBuffer
from sb3_polygrad.callbacks import ImaginationVideoCallback, WorldModelEvaluationCallback
from sb3_polygrad.imagination import (
    ClosedLoopImagination,
    ClosedLoopOptions,
    GuidedImagination,
    GuidedOptions,
    ImaginationSetup,
    RuleTerminations,
    SequentialImagination,
    SimulatorImagination,
    SimulatorOptions,
    StateClipOptions,
    WorldModelNeeds,
)
from sb3_polygrad.polygrad.actor_critic import ActorCriticConfig
from sb3_polygrad.polygrad.arguments import Range
from sb3_polygrad.video.states import ObservationLayout
from sb3_polygrad.world_model import (
    CausalResidualMLPDenoiser,
    DiffusionWorldModel,
    PolicyGuidedSampler,
    ResidualMLPDenoiser,
    TransformerDenoiser,
)


@pytest.mark.parametrize(
    "cls",
    [
        PolyGRAD,
        PolyGRADPolicy,
        PolyGRADReplayBuffer,
        DiffusionWorldModel,
        PolicyGuidedSampler,
        ResidualMLPDenoiser,
        CausalResidualMLPDenoiser,
        TransformerDenoiser,
        ImaginationVideoCallback,
        WorldModelEvaluationCallback,
        ActorCriticConfig,
        ImaginationSetup,
        GuidedOptions,
        ClosedLoopOptions,
        StateClipOptions,
        SimulatorOptions,
        WorldModelNeeds,
        GuidedImagination,
        ClosedLoopImagination,
        SequentialImagination,
        SimulatorImagination,
        RuleTerminations,
        ObservationLayout,
        Range,
    ],
)
def test_every_constructor_argument_is_documented(cls):
    """The class docstring's ``:param:`` list and the signature must not drift apart."""
    documented = re.findall(r":param (\w+):", cls.__doc__ or "")
    arguments = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    assert documented == arguments
