"""
Inner constructors repeat some of the defaults of the classes that build them (so that each can be used on its own); the
top level passes its values down explicitly. This test keeps the two in agreement: every argument an inner class shares
with its builder (by name, or by the renamings below) has the same default, unless listed with the reason it differs.
"""

import inspect
from typing import Any

import pytest

from sb3_polygrad import PolyGRAD
from sb3_polygrad.baselines import AutoregressiveDiffusion, PolyGRADWorldModel
from sb3_polygrad.baselines.polygrad_world_model import DEFAULT_LEARNING_RATES
from sb3_polygrad.imagination import ClosedLoopOptions, GuidedOptions
from sb3_polygrad.polygrad.actor_critic import ActorCriticConfig
from sb3_polygrad.polygrad.policies import Actor, PolyGRADPolicy
from sb3_polygrad.world_model import DiffusionSchedule, DiffusionWorldModel, PolicyGuidedSampler
from sb3_polygrad.world_model.closed_loop_sampler import ClosedLoopSampler


def defaults(cls: type) -> dict[str, Any]:
    """The constructor's arguments that have a default, with it."""
    parameters = inspect.signature(cls.__init__).parameters.items()
    return {name: p.default for name, p in parameters if p.default is not inspect.Parameter.empty}


# (builder, inner class, {inner name: builder name} where they differ, {inner name: why the defaults differ})
PAIRS: list[tuple[type, type, dict[str, str], dict[str, str]]] = [
    (PolyGRAD, DiffusionWorldModel, {}, {}),
    (GuidedOptions, PolicyGuidedSampler, {}, {}),
    (
        ClosedLoopOptions,
        ClosedLoopSampler,
        {},
        {"state_change_clip_steps": "the sampler takes a count; the options' None is the reference's t <= 10 scaled to N"},
    ),
    (PolyGRAD, ActorCriticConfig, {}, {}),
    (DiffusionWorldModel, DiffusionSchedule, {"tau": "noise_schedule_tau"}, {}),
    (DiffusionWorldModel, PolicyGuidedSampler, {}, {}),
    (PolyGRADPolicy, Actor, {}, {}),
    (
        PolyGRAD,
        PolyGRADWorldModel,
        {},
        {"learning_rate": "the denoiser's rate (PolyGRAD's world_model_learning_rate, checked below), not the actor's"},
    ),
    (
        GuidedOptions,
        PolyGRADWorldModel,
        {},
        {"guidance_learning_rate": "the paper's world-model-only runs tune g at 3e-2, its online runs at 3e-3"},
    ),
    (
        PolyGRAD,
        AutoregressiveDiffusion,
        {},
        {"learning_rate": "the denoiser's rate (PolyGRAD's world_model_learning_rate, checked below), not the actor's"},
    ),
]


@pytest.mark.parametrize("outer, inner, renamed, differ", PAIRS, ids=[f"{o.__name__}-{i.__name__}" for o, i, *_ in PAIRS])
def test_inner_defaults_agree_with_the_top_level(outer, inner, renamed, differ):
    outer_defaults, inner_defaults = defaults(outer), defaults(inner)
    shared = [name for name in inner_defaults if renamed.get(name, name) in outer_defaults and name not in differ]
    assert shared, "no argument in common: the pair is stale"
    for name in shared:
        assert inner_defaults[name] == outer_defaults[renamed.get(name, name)], f"{inner.__name__}.{name}"
    for name in differ:
        assert name in inner_defaults and inner_defaults[name] != outer_defaults[name], f"{name} is no longer an exception"


def test_the_study_trains_its_diffusion_models_at_polygrads_denoiser_rate():
    top = defaults(PolyGRAD)["world_model_learning_rate"]
    assert DEFAULT_LEARNING_RATES["mlp"] == DEFAULT_LEARNING_RATES["causal_mlp"] == top
    assert defaults(AutoregressiveDiffusion)["learning_rate"] == top
