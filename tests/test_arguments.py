"""Every numeric argument of PolyGRAD, of its components' options, and of the world model, denoiser and policy it builds,
has a range it enforces."""

import inspect
import math
import re
import types
import typing

import pytest

from sb3_polygrad import PolyGRAD, PolyGRADPolicy
from sb3_polygrad.imagination import ClosedLoopOptions, GuidedOptions, ImaginationSetup, StateClipOptions
from sb3_polygrad.polygrad.actor_critic import ActorCriticConfig
from sb3_polygrad.world_model.world_model import DENOISERS, DiffusionWorldModel

# The options of imagination_kwargs: those of every method (ImaginationSetup's) and each method's own.
IMAGINATION_OPTIONS = [ImaginationSetup, GuidedOptions, ClosedLoopOptions, StateClipOptions]

# Computed by PolyGRAD from the env, not passed on from the user.
DERIVED = {"obs_dim", "action_dim", "transition_dim"}


def numeric_parameters(cls: type) -> list[str]:
    """Constructor arguments annotated ``int`` or ``float`` (alone or in a union; ``bool`` is not numeric here)."""
    hints = typing.get_type_hints(cls.__init__)
    names = []
    for name in inspect.signature(cls.__init__).parameters:
        hint = hints.get(name)
        members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if name not in DERIVED and any(member in (int, float) for member in members):
            names.append(name)
    return names


def placed(name: str, value: object) -> tuple[dict, str]:
    """PolyGRAD keyword arguments that pass ``value`` as ``name`` where it belongs, and the name the error must give."""
    if name in inspect.signature(PolyGRAD.__init__).parameters:
        return {name: value}, name
    if name in inspect.signature(ActorCriticConfig.__init__).parameters:
        return {"actor_critic_kwargs": {name: value}}, f"actor_critic_kwargs[{name!r}]"
    if any(name in inspect.signature(cls.__init__).parameters for cls in IMAGINATION_OPTIONS):
        return {"imagination_kwargs": {name: value}}, f"imagination_kwargs[{name!r}]"
    if name in inspect.signature(DiffusionWorldModel.__init__).parameters:
        return {"world_model_kwargs": {name: value}}, f"world_model_kwargs[{name!r}]"
    if any(name in inspect.signature(cls.__init__).parameters for cls in DENOISERS.values()):
        return {"world_model_kwargs": {"denoiser_kwargs": {name: value}}}, f"world_model_kwargs['denoiser_kwargs'][{name!r}]"
    assert name in inspect.signature(PolyGRADPolicy.__init__).parameters, name
    return {"policy_kwargs": {name: value}}, f"policy_kwargs[{name!r}]"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(gamma=1.5), "gamma"),
        (dict(gae_lambda=1.5), "gae_lambda"),
        (dict(tau=1.5), "tau"),
        (dict(tau=0.0), "tau"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=-3e-4), "learning_rate"),
        (dict(learning_rate=lambda progress: -3e-4 * progress), "learning_rate"),
        (dict(ent_coef=-1.0), "ent_coef"),
        (dict(actor_critic_kwargs=dict(max_grad_norm=-1.0)), "actor_critic_kwargs['max_grad_norm']"),
        (dict(imagination_kwargs=dict(row_lag=-1.0)), "imagination_kwargs['row_lag']"),
        (dict(train_freq=(0, "step")), "train_freq"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(world_model_kwargs=dict(ema_update_every=0)), "world_model_kwargs['ema_update_every']"),
        (
            dict(world_model_kwargs=dict(denoiser_kwargs=dict(num_layers=0))),
            "world_model_kwargs['denoiser_kwargs']['num_layers']",
        ),
        (dict(buffer_size=20, batch_size=32, horizon=4), "buffer_size"),
    ],
)
def test_out_of_range_arguments_fail_at_construction_with_their_range(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{re.escape(name)} "):
        PolyGRAD("MlpPolicy", "Pendulum-v1", **kwargs)


def test_every_numeric_argument_has_a_range():
    from sb3_polygrad.polygrad.arguments import RANGES

    numeric = set()
    for cls in [PolyGRAD, ActorCriticConfig, *IMAGINATION_OPTIONS, DiffusionWorldModel, PolyGRADPolicy, *DENOISERS.values()]:
        numeric.update(numeric_parameters(cls))
    assert numeric - RANGES.keys() == set(), "declare the range of a new argument in sb3_polygrad/polygrad/arguments.py"
    assert RANGES.keys() - numeric == set(), "a range for an argument that no longer exists"


def closed(admissible) -> tuple[bool, bool]:
    return admissible.interval[0] == "[", admissible.interval[-1] == "]"


def out_of_range(admissible) -> list[float]:
    """Values just outside each bound, infinity where it is excluded, NaN, and a non-integer for an integer range."""
    (low, high), (closed_low, closed_high) = admissible.bounds, closed(admissible)
    values = [] if admissible.integer else [math.nan]
    if math.isfinite(low):
        values.append(low - 1 if closed_low else low)
    if math.isfinite(high):
        values.append(high + 1 if closed_high else high)
    elif not closed_high:
        values.append(math.inf)
    if admissible.integer:
        values.append(low + 1.5)  # within the bounds, but not an integer
    return values


def test_every_range_is_enforced_and_its_closed_bounds_accepted():
    from sb3_polygrad.polygrad.arguments import RANGES, check_arguments

    for name, admissible in RANGES.items():
        for value in out_of_range(admissible):
            kwargs, shown = placed(name, value)
            with pytest.raises(ValueError, match=rf"^{re.escape(shown)} must be .* in {re.escape(admissible.interval)}, got"):
                check_arguments(kwargs)
        for bound, is_closed in zip(admissible.bounds, closed(admissible), strict=True):
            if is_closed and math.isfinite(bound):
                check_arguments(placed(name, int(bound) if admissible.integer else bound)[0])


def test_the_range_check_runs_before_anything_is_built():
    from sb3_polygrad.polygrad.arguments import RANGES

    for name in RANGES:
        low, _ = RANGES[name].bounds
        value = low - 1 if math.isfinite(low) else math.nan
        kwargs, shown = placed(name, value)
        with pytest.raises(ValueError, match=rf"^{re.escape(shown)} must be"):
            PolyGRAD("MlpPolicy", "Pendulum-v1", **kwargs)
