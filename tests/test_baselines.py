import inspect
import re
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from torch import nn

from sb3_polygrad.baselines import (
    AutoregressiveDiffusion,
    ComparisonWorldModel,
    MLPEnsemble,
    PolyGRADWorldModel,
    TransformerWorldModel,
    open_loop_evaluation,
    sample_actions,
    time_imagination,
)
from sb3_polygrad.baselines.datasets import SACGaussianPolicy, TransitionDataset, collect_transitions
from sb3_polygrad.common.simulator import set_sim_state, to_env_actions
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples

OBS, ACT = 4, 2
TINY_DIFFUSION = dict(n_diffusion_steps=4, ema_start=0, ema_update_every=1)


class LinearPolicy(nn.Module):
    """A Gaussian policy with a linear mean and a fixed std, in scaled action units."""

    def __init__(self, obs_dim: int = OBS, action_dim: int = ACT, std: float = 0.3) -> None:
        super().__init__()
        self.linear = nn.Linear(obs_dim, action_dim)
        self.std = std

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        mean = th.tanh(self.linear(observations))
        return mean, th.full_like(mean, self.std)


FACTORIES: dict[str, Callable[[], ComparisonWorldModel]] = {
    "polygrad_mlp": lambda: PolyGRADWorldModel(
        OBS, ACT, horizon=5, world_model_kwargs=dict(**TINY_DIFFUSION, denoiser_kwargs=dict(hidden_dim=16, num_layers=1))
    ),
    "polygrad_transformer": lambda: PolyGRADWorldModel(
        OBS,
        ACT,
        horizon=5,
        denoiser="transformer",
        world_model_kwargs=dict(**TINY_DIFFUSION, denoiser_kwargs=dict(d_model=8, n_layers=1, n_heads=2)),
    ),
    "autoregressive_diffusion": lambda: AutoregressiveDiffusion(
        OBS, ACT, world_model_kwargs=dict(**TINY_DIFFUSION, denoiser_kwargs=dict(hidden_dim=16, num_layers=1))
    ),
    "transformer_world_model": lambda: TransformerWorldModel(OBS, ACT, context_length=3, d_model=8, n_layers=1, n_heads=2),
    "mlp_ensemble": lambda: MLPEnsemble(OBS, ACT, n_members=3, n_elites=2, hidden_dims=(16, 16)),
}


def random_windows(batch: int, horizon: int, seed: int = 0) -> WindowSamples:
    gen = th.Generator().manual_seed(seed)
    obs = th.randn(batch, horizon, OBS, generator=gen).cumsum(dim=1)  # smooth-ish trajectories
    terminals = (th.rand(batch, horizon, generator=gen) < 0.1).float().cummax(dim=1).values
    return WindowSamples(obs, th.randn(batch, horizon, ACT, generator=gen), th.randn(batch, horizon, generator=gen), terminals)


def fitted(name: str) -> ComparisonWorldModel:
    th.manual_seed(0)
    model = FACTORIES[name]()
    data = random_windows(64, 5, seed=1)
    model.update_normalizer(data.observations[:, 0], data.actions[:, 0], data.rewards[:, 0], data.terminals[:, 0])
    return model


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_each_model_trains_and_imagines_trajectories_of_the_right_shape(name):
    model = fitted(name)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    for step in range(3):
        info = model.train_step(random_windows(16, model.train_horizon, seed=step))
        assert np.isfinite(info["world_model_loss"])
    after = [p for p in model.parameters() if p.requires_grad]
    assert any(not th.equal(b, a) for b, a in zip(before, after, strict=True)), "an optimiser step changed nothing"
    policy = LinearPolicy()
    start = th.randn(6, OBS)
    traj = model.imagine(start, policy, 5)
    assert traj.observations.shape == (6, 5, OBS) and traj.actions.shape == (6, 5, ACT)
    assert traj.rewards.shape == (6, 5) and traj.dones.shape == (6, 5)
    th.testing.assert_close(traj.observations[:, 0], start)
    assert set(traj.dones.unique().tolist()) <= {0.0, 1.0}
    assert all(th.isfinite(t).all() for t in (traj.observations, traj.actions, traj.rewards))
    assert isinstance(model.adapt_to_policy(start, policy), dict)


def test_one_step_models_imagine_any_horizon_and_polygrad_only_its_own():
    policy = LinearPolicy()
    for name in ["autoregressive_diffusion", "transformer_world_model", "mlp_ensemble"]:
        model = fitted(name)
        assert model.imagine(th.randn(3, OBS), policy, 8).observations.shape == (3, 8, OBS)  # past the context too
    polygrad = fitted("polygrad_mlp")
    assert polygrad.supports_horizon(5) and not polygrad.supports_horizon(8)
    with pytest.raises(ValueError, match="5 rows"):
        polygrad.imagine(th.randn(3, OBS), policy, 8)


def test_guidance_scale_grows_when_imagined_actions_are_too_wide():
    model = fitted("polygrad_mlp")
    assert isinstance(model, PolyGRADWorldModel)
    # Untrained denoiser, g = 1e-4: the actions stay near their N(0, I) start, far wider than the policy's std 0.05.
    model.log_guidance_scale.fill_(np.log(1e-4))
    info = model.adapt_to_policy(th.randn(32, OBS), LinearPolicy(std=0.05))
    assert info["imagined_action_std"] > 1 and info["guidance_scale"] > 1e-4
    frozen = PolyGRADWorldModel(OBS, ACT, horizon=5, tune_guidance=False, world_model_kwargs=TINY_DIFFUSION)
    assert frozen.adapt_to_policy(th.randn(4, OBS), LinearPolicy())["guidance_scale"] == pytest.approx(0.005)


def test_autoregressive_diffusion_ignores_the_second_rows_action():
    batch = random_windows(8, 2)
    other = batch._replace(actions=th.cat([batch.actions[:, :1], 100 * th.randn(8, 1, ACT)], dim=1))
    # train_step puts the placeholder in row 1 whatever the data hold there: identical seeds give identical updates
    updated = []
    for b in (batch, other):
        model = fitted("autoregressive_diffusion")
        th.manual_seed(3)
        model.train_step(b)
        updated.append([p.detach().clone() for p in model.parameters()])
    assert all(th.equal(a, b) for a, b in zip(*updated, strict=True))


def test_transformer_world_model_is_causal():
    model = fitted("transformer_world_model")
    assert isinstance(model, TransformerWorldModel)
    states, actions = th.randn(2, 3, OBS), th.randn(2, 3, ACT)
    changed_states, changed_actions = states.clone(), actions.clone()
    changed_states[:, 2] += 5.0
    changed_actions[:, 2] += 5.0
    with th.no_grad():
        out, changed = model._predict(states, actions), model._predict(changed_states, changed_actions)
    th.testing.assert_close(out[:, :2], changed[:, :2])
    assert not th.allclose(out[:, 2], changed[:, 2])


def test_ensemble_elites_are_the_members_with_lowest_held_out_error():
    model = fitted("mlp_ensemble")
    assert isinstance(model, MLPEnsemble)
    with th.no_grad():
        model.layers[-1].bias[0].add_(50.0)  # member 0 predicts nonsense
    mse = model.select_elites(random_windows(32, 2))
    assert 0 not in model.elite_indices.tolist() and mse[0] == mse.max()
    with pytest.raises(ValueError, match="n_elites"):
        MLPEnsemble(OBS, ACT, n_members=2, n_elites=3)


class SimulatorOracle(ComparisonWorldModel):
    """A 'world model' that returns the simulator's own trajectory from the recorded start states."""

    def __init__(self, env: gym.Env, start_sim_states: np.ndarray, offset: float = 0.0) -> None:
        super().__init__(int(env.observation_space.shape[0]), int(env.action_space.shape[0]), train_horizon=2)
        self.env = env
        self.start_sim_states = start_sim_states
        self.offset = offset  # added to every imagined state after the start
        self._normalizer = TransitionNormalizer(self.obs_dim, self.action_dim)

    @property
    def normalizer(self) -> TransitionNormalizer:
        return self._normalizer

    def train_step(self, batch: WindowSamples) -> dict[str, float]:
        return {}

    @th.no_grad()
    def imagine(self, start_states, policy, horizon) -> ImaginedTrajectory:
        low, high = self.env.action_space.low, self.env.action_space.high
        obs = th.zeros(len(start_states), horizon, self.obs_dim, dtype=th.float64)
        actions = th.zeros(len(start_states), horizon, self.action_dim)
        rewards = th.zeros(len(start_states), horizon, dtype=th.float64)  # float64: the comparison is exact
        for i, sim_state in enumerate(self.start_sim_states):
            set_sim_state(self.env, sim_state)
            obs[i, 0] = start_states[i].double()
            for k in range(horizon):
                actions[i, k] = sample_actions(policy, obs[i, k].float())
                if k < horizon - 1:
                    next_obs, reward, _, _, _ = self.env.unwrapped.step(to_env_actions(actions[i, k].numpy(), low, high))
                    obs[i, k + 1], rewards[i, k] = th.as_tensor(next_obs) + self.offset, float(reward)
        return ImaginedTrajectory(obs, actions, rewards, th.zeros(len(start_states), horizon))


def test_metric_is_zero_for_a_model_that_returns_the_simulators_trajectory():
    env = gym.make("Hopper-v4")
    env.reset(seed=0)
    policy = SACGaussianPolicy(SAC("MlpPolicy", "Hopper-v4", policy_kwargs=dict(net_arch=[8]), seed=0, device="cpu"))
    dataset: TransitionDataset = collect_transitions("Hopper-v4", policy, 300, seed=0)
    windows = dataset.to_replay_buffer().sample_windows(12, 2)
    assert windows.sim_states is not None
    oracle = SimulatorOracle(env, windows.sim_states[:, 0].numpy())
    errors = open_loop_evaluation(oracle, policy, env, windows, horizon=8)
    assert errors["count"][1] == 12 and errors["count"][-1] < 12  # some episodes terminate within the horizon
    # exactly zero: replays reset the solver's warm start, so contacts (Hopper) replay bit for bit
    assert np.all(errors["state_mse"] == 0.0) and errors["reward_mse"] == 0.0
    # a model that is wrong by 0.1 in every state dimension after the start has MSE 0.01
    wrong = SimulatorOracle(env, windows.sim_states[:, 0].numpy(), offset=0.1)
    errors = open_loop_evaluation(wrong, policy, env, windows, horizon=8)
    alive = errors["count"][1:] > 0
    np.testing.assert_allclose(errors["state_mse"][1:][alive], 0.01, rtol=1e-6)
    with pytest.raises(ValueError, match="simulator states"):
        open_loop_evaluation(oracle, policy, env, windows._replace(sim_states=None), horizon=8)


def test_time_imagination_measures_a_positive_duration():
    model = fitted("mlp_ensemble")
    assert time_imagination(model, LinearPolicy(), th.randn(32, OBS), 4) > 0


@pytest.mark.parametrize(
    "cls", [PolyGRADWorldModel, AutoregressiveDiffusion, TransformerWorldModel, MLPEnsemble, ComparisonWorldModel]
)
def test_every_constructor_argument_is_documented(cls):
    documented = re.findall(r":param (\w+):", cls.__doc__ or "")
    assert documented == [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
