"""Imagination methods as components: chosen by name or class, their options in imagination_kwargs, checked when the
model is built, and any of them ended by the task's termination rule."""

import re
from dataclasses import dataclass

import pytest
import torch as th

from sb3_polygrad import PolyGRAD
from sb3_polygrad.imagination import (
    IMAGINATIONS,
    ClosedLoopImagination,
    GuidedImagination,
    ImaginationSetup,
    RuleTerminations,
    SequentialImagination,
    SimulatorImagination,
    WorldModelImagination,
    imagination_options,
)
from sb3_polygrad.world_model.types import ImaginedTrajectory


@dataclass(frozen=True)
class ConstantOptions:
    """
    :param action: every imagined action, in scaled units
    """

    action: float = 0.0


class ConstantActions(WorldModelImagination):
    """A user's own method: the world model's states given one constant action everywhere."""

    options_class = ConstantOptions

    def __init__(self, algo: PolyGRAD, action: float) -> None:
        self.algo = algo
        self.action = action

    @classmethod
    def from_algorithm(cls, algo: PolyGRAD, options: ConstantOptions) -> "ConstantActions":
        return cls(algo, options.action)

    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        actions = th.full((obs0.shape[0], self.algo.horizon, self.algo.action_space.shape[0]), self.action)  # type: ignore[index]
        return self.algo.world_model.sample_with_actions(obs0, actions, generator)


@pytest.mark.parametrize(
    "imagination, denoiser, expected",
    [
        ("guided", "mlp", GuidedImagination),
        ("closed_loop", "causal_mlp", ClosedLoopImagination),
        ("sequential", "causal_mlp", SequentialImagination),
        (ClosedLoopImagination, "causal_mlp", ClosedLoopImagination),
    ],
)
def test_a_name_or_a_class_selects_the_method(imagination, denoiser, expected, tiny_kwargs):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", imagination=imagination, denoiser=denoiser, **tiny_kwargs)
    assert type(model.imaginer) is expected
    # what the method needs of the world model reaches it: closed-loop imagination trains with a noise level per row
    assert model.world_model.per_row_noise == (expected is ClosedLoopImagination)


def test_the_simulator_stands_in_for_the_world_model_imagination_it_names(tiny_kwargs):
    kwargs = dict(evaluated="closed_loop", row_lag=2.0)
    model = PolyGRAD(
        "MlpPolicy", "InvertedPendulum-v4", imagination="simulator", denoiser="causal_mlp", imagination_kwargs=kwargs,
        **tiny_kwargs,
    )  # fmt: skip
    assert type(model.imaginer) is SimulatorImagination
    evaluated = model.imaginer.world_model_imagination()
    assert type(evaluated) is ClosedLoopImagination and evaluated.row_lag == 2.0
    assert model.world_model.per_row_noise  # its world model trains as the evaluated method needs


def test_a_users_own_method_trains_with_its_options(tiny_kwargs):
    model = PolyGRAD(
        "MlpPolicy", "Pendulum-v1", imagination=ConstantActions, imagination_kwargs=dict(action=0.5), seed=0,
        **tiny_kwargs,
    )  # fmt: skip
    learned: list[ImaginedTrajectory] = []
    train = model._train_actor_critic
    model._train_actor_critic = lambda trajectory, real: learned.append(trajectory) or train(trajectory, real)  # type: ignore[method-assign]
    model.learn(200)
    assert learned and th.allclose(learned[-1].actions, th.full_like(learned[-1].actions, 0.5), atol=1e-5)
    assert model.log_guidance_scale is None  # nothing to tune, nothing saved for it
    with pytest.raises(ValueError, match=re.escape("takes the imagination_kwargs ['start_window', 'terminations', 'action']")):
        PolyGRAD("MlpPolicy", "Pendulum-v1", imagination=ConstantActions, imagination_kwargs=dict(row_lag=1.0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(imagination="oracle"), "imagination must be one of ('guided', 'closed_loop', 'sequential', 'simulator')"),
        (dict(imagination=dict), "or a concrete Imagination subclass"),
        (dict(imagination=WorldModelImagination), "or a concrete Imagination subclass"),
        (
            dict(imagination_kwargs=dict(row_lag=1.0)),
            "imagination='guided' takes the imagination_kwargs ['start_window', 'terminations', 'state_change_clip'",
        ),
        (dict(imagination_kwargs=dict(row_lag=1.0)), "'compile']; not ['row_lag']"),
        (
            dict(imagination="closed_loop", denoiser="causal_mlp", imagination_kwargs=dict(guidance_scale=0.01)),
            "imagination='closed_loop' takes the imagination_kwargs ['start_window', 'terminations', 'state_change_clip', "
            "'state_change_clip_steps', 'row_lag']; not ['guidance_scale']",
        ),
        (dict(imagination="simulator", imagination_kwargs=dict(evaluated="simulator")), "['evaluated'] must be one of"),
        (dict(actor_critic_kwargs=dict(gamma=0.9)), "actor_critic_kwargs takes the keys ['reward_scale',"),
        (dict(actor_critic_kwargs=dict(reward_scael=0.1)), "'action_std_schedule', 'real_vf_coef']; not ['reward_scael']"),
        (dict(imagination="closed_loop"), "imagination='closed_loop' samples states from past actions only"),
        (dict(imagination="sequential"), "needs denoiser='causal_mlp'"),
        (
            dict(imagination="closed_loop", denoiser="causal_mlp", world_model_kwargs=dict(per_row_noise=False)),
            "imagination='closed_loop' sets world_model_kwargs['per_row_noise'] to True",
        ),
        (dict(world_model_kwargs=dict(sampler_kwargs={})), "sets world_model_kwargs['sampler_kwargs']"),
    ],
)
def test_what_cannot_run_fails_at_construction_naming_what_can(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PolyGRAD("MlpPolicy", "Pendulum-v1", **kwargs)


def test_each_method_takes_the_generic_options_and_its_own():
    assert imagination_options("sequential", {}) == (
        "start_window", "terminations", "state_change_clip", "state_change_clip_steps",
    )  # fmt: skip
    assert imagination_options("simulator", {"evaluated": "closed_loop"})[2:] == (
        "evaluated", "state_change_clip", "state_change_clip_steps", "row_lag",
    )  # fmt: skip
    setup = ImaginationSetup.parse("guided", {"start_window": 500, "terminations": "env_rule", "guidance_scale": 0.1})
    assert (setup.start_window, setup.terminations, setup.options.guidance_scale) == (500, "env_rule", 0.1)
    assert set(IMAGINATIONS) == {"guided", "closed_loop", "sequential", "simulator"}


def in_pendulum_bounds(trajectory: ImaginedTrajectory) -> th.Tensor:
    """InvertedPendulum's rule: an episode ends once the pole's angle leaves [-0.2, 0.2]."""
    return (trajectory.observations[:, 1:, 1].abs() > 0.2).float().cummax(dim=1).values


@pytest.mark.parametrize("imagination", ["guided", "closed_loop", "sequential", "simulator"])
def test_rule_terminations_end_any_methods_trajectories_by_the_rule(imagination, tiny_kwargs):
    model = PolyGRAD(
        "MlpPolicy", "InvertedPendulum-v4", imagination=imagination, denoiser="causal_mlp",
        imagination_kwargs=dict(terminations="env_rule"), seed=0, **tiny_kwargs,
    )  # fmt: skip
    assert isinstance(model.imaginer, RuleTerminations)
    model.learn(150)
    start = model.replay_buffer.sample_windows(32, model.horizon)
    th.manual_seed(0)  # the simulator's rollouts draw the policy's actions from torch's global generator
    trajectory = model.imaginer.imagine(start, th.Generator().manual_seed(0))
    assert th.equal(trajectory.dones[:, :-1], in_pendulum_bounds(trajectory))
    # the method's own trajectory, its flags replaced: the same states and actions from the same random numbers
    th.manual_seed(0)
    inner = model.imaginer.inner.imagine(start, th.Generator().manual_seed(0))
    assert th.equal(inner.observations, trajectory.observations) and th.equal(inner.actions, trajectory.actions)
