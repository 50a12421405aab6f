import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnv, SimpleMultiObsEnv
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from sb3_polygrad import PolyGRAD
from sb3_polygrad.callbacks import WorldModelEvaluationCallback
from sb3_polygrad.world_model.denoisers import TransformerDenoiser


class CountSteps(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _on_step(self) -> bool:
        self.calls += 1
        return True


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "InvertedPendulum-v4"])
def test_learn_runs_and_logs(env_id, tiny_kwargs, tmp_path):
    model = PolyGRAD("MlpPolicy", env_id, seed=0, tensorboard_log=str(tmp_path), **tiny_kwargs)
    callback = CountSteps()
    # Pendulum is no MuJoCo env: the world-model evaluation warns that it logs nothing, and the run goes on
    evaluation = WorldModelEvaluationCallback(eval_freq=100, n_trajectories=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.learn(300, callback=[callback, evaluation], progress_bar=True)
    # only real env steps count
    assert model.num_timesteps == 300 and callback.calls == 300
    assert model._n_updates > 0
    assert list(tmp_path.glob("PolyGRAD_1/events.out.tfevents.*"))
    obs, _ = gym.make(env_id).reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == model.action_space.shape and model.action_space.contains(action)


class Spy(BaseCallback):
    """Keep every value the model logs, by key."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: dict[str, float] = {}

    def _on_training_start(self) -> None:
        record = self.model.logger.record

        def spy(key, value, exclude=None):
            self.recorded[key] = value
            record(key, value, exclude)

        self.model.logger.record = spy

    def _on_step(self) -> bool:
        return True


def test_world_model_error_is_logged_on_mujoco_by_the_callback_only(tiny_kwargs):
    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", seed=0, **tiny_kwargs)
    spy = Spy()
    model.learn(300, callback=[spy, WorldModelEvaluationCallback(eval_freq=100, n_trajectories=8)])
    recorded = spy.recorded
    for key in [
        "world_model/state_mse_h1",
        "world_model/reward_mse_h0",
        "world_model/termination_rate",
        "world_model/true_termination_rate",
        "world_model/data_actions_state_mse_h1",
        "world_model/data_actions_true_termination_rate",
        "train/guidance_scale",
        "train/imagined_action_std",
        "train/actor_learning_rate",
        "train/line_search_steps",
        "train/world_model_loss",
        "train/critic_loss",
    ]:
        assert key in recorded, key
        assert np.isfinite(recorded[key])
    assert model.replay_buffer.sim_states is not None
    # without the callback, the same run logs no world-model error
    without = Spy()
    PolyGRAD("MlpPolicy", "InvertedPendulum-v4", seed=0, **tiny_kwargs).learn(300, callback=without)
    assert "train/critic_loss" in without.recorded
    assert not [key for key in without.recorded if key.startswith("world_model/")]


def test_world_model_evaluation_callback_checks_its_arguments_and_model():
    with pytest.raises(ValueError, match=r"^eval_freq must be an integer in"):
        WorldModelEvaluationCallback(eval_freq=0)
    with pytest.raises(ValueError, match=r"^n_trajectories must be an integer in"):
        WorldModelEvaluationCallback(n_trajectories=2.5)  # type: ignore[arg-type]
    from stable_baselines3 import SAC

    with pytest.raises(TypeError, match="needs a PolyGRAD model"):
        SAC("MlpPolicy", "Pendulum-v1").learn(1, callback=WorldModelEvaluationCallback())


def test_learning_rate_schedule_decaying_to_zero_runs_to_the_end(tiny_kwargs):
    # The zoo's "lin_3e-4" reaches a rate of exactly 0 at the last training call: no log(0), no pointless line search.
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, learning_rate=lambda progress: 3e-4 * progress, **tiny_kwargs)
    model.learn(200)
    assert model.num_timesteps == 200 and math.isfinite(model.actor_lr.value)
    assert model.logger.name_to_value["train/line_search_steps"] == 0  # the last step had a rate of 0: nothing to search


@pytest.mark.parametrize("vec_env_cls", [DummyVecEnv, SubprocVecEnv])
def test_several_envs(vec_env_cls, tiny_kwargs):
    env = make_vec_env("InvertedPendulum-v4", n_envs=2, seed=0, vec_env_cls=vec_env_cls)
    model = PolyGRAD("MlpPolicy", env, seed=0, **tiny_kwargs)
    model.learn(300)
    assert model.num_timesteps >= 300
    assert model.replay_buffer.sim_states is not None and model.replay_buffer.sim_states.shape[1] == 2
    actions, _ = model.predict(env.reset(), deterministic=True)
    assert actions.shape == (2, 1)
    env.close()


def sampler_setting(name: str):
    """Read a sampler setting off a model."""
    return lambda model: getattr(model.world_model.sampler, name)


@pytest.mark.parametrize(
    "overrides, reached, expected",
    [
        (dict(denoiser="transformer"), lambda model: type(model.world_model.denoiser), TransformerDenoiser),
        (dict(imagination_kwargs=dict(guidance_type="none")), sampler_setting("guidance_type"), "none"),
        (dict(imagination_kwargs=dict(guidance_type="sample")), sampler_setting("guidance_type"), "sample"),
        (dict(imagination_kwargs=dict(update_states=True)), sampler_setting("update_states"), True),
        (dict(imagination_kwargs=dict(action_clip_std=None)), sampler_setting("action_clip_std"), None),
        (
            dict(imagination_kwargs=dict(states_for_guidance="posterior_mean")),
            sampler_setting("states_for_guidance"),
            "posterior_mean",
        ),
        (dict(n_sampling_steps=4), lambda model: len(model.world_model.schedule.sampling_t), 4),
    ],
)
def test_transformer_denoiser_and_each_ablation_train(overrides, reached, expected, tiny_kwargs):
    kwargs = {**tiny_kwargs, **overrides}
    if overrides.get("denoiser") == "transformer":
        kwargs["world_model_kwargs"] = dict(denoiser_kwargs=dict(d_model=16, n_layers=1, n_heads=2))
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **kwargs)
    assert reached(model) == expected  # the switch reaches the part of the world model it configures
    log_guidance_scale = model.log_guidance_scale.clone()
    model.learn(150)
    assert model._n_updates > 0  # actor-critic steps on imagined data, not only world-model updates
    for key in ["train/world_model_loss", "train/actor_loss", "train/critic_loss", "train/imagined_action_std"]:
        assert np.isfinite(model.logger.name_to_value[key]), key
    # Only gradient guidance is tuned: the ablations that replace it leave g where it started.
    tuned = model.world_model.sampler.guidance_type == "grad"
    assert th.equal(model.log_guidance_scale, log_guidance_scale) != tuned


def record_imagination(model: PolyGRAD) -> list:
    """Keep every trajectory the model's imagination method hands to the learner."""
    rollouts: list = []
    imagine = model.imaginer.imagine
    model.imaginer.imagine = lambda start, generator=None: rollouts.append(imagine(start, generator)) or rollouts[-1]  # type: ignore[method-assign]
    return rollouts


def test_simulator_imagination_trains_on_the_simulators_rollouts(tiny_kwargs):
    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", imagination="simulator", seed=0, **tiny_kwargs)
    assert type(model.imaginer.world_model_imagination()).__name__ == "GuidedImagination"  # evaluated: guided, by default
    rollouts = record_imagination(model)
    model.learn(200)
    assert model._n_updates > 0 and len(model.imaginer._envs) == tiny_kwargs["imagination_batch_size"]
    # the policy learned from the simulator's own states: every step obeys InvertedPendulum's termination rule
    traj = rollouts[-1]
    angle_out = traj.observations[:, 1:, 1].abs() > 0.2
    assert angle_out.any() and not angle_out.all()
    assert th.equal(angle_out, traj.dones[:, :-1] > 0)


def test_sequential_imagination_trains_on_on_policy_samples(tiny_kwargs):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", imagination="sequential", denoiser="causal_mlp", seed=0, **tiny_kwargs)
    assert model.log_guidance_scale is None  # no guidance to tune
    rollouts = record_imagination(model)
    model.learn(200)
    assert model._n_updates > 0
    # every imagined action the learner uses is a policy sample at the imagined state it is taken in
    traj = rollouts[-1]
    with th.no_grad():
        mean, std = model.policy.action_distribution_params(traj.observations[:, :-1])
    z = (traj.actions[:, :-1] - mean) / std
    assert abs(z.mean().item()) < 0.1 and abs(z.std().item() - 1.0) < 0.1


@pytest.mark.parametrize("window", [None, 40])
def test_imagination_starts_among_the_newest_transitions_when_given_a_window(window, tiny_kwargs):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", imagination_kwargs=dict(start_window=window), seed=0, **tiny_kwargs)
    starts: list[th.Tensor] = []
    imagine = model.imaginer.imagine
    model.imaginer.imagine = lambda start, generator=None: starts.append(start.observations[:, 0]) or imagine(start, generator)  # type: ignore[method-assign]
    model.learn(300)
    buffer = model.replay_buffer
    newest = th.as_tensor(buffer.observations[buffer.pos - 40 : buffer.pos, 0])
    # each start state of the last update is a row of the buffer: is it one of the newest 40?
    among_newest = (starts[-1][:, None] == newest[None]).all(-1).any(-1)
    assert among_newest.all() if window else not among_newest.all()


def test_unsupported_spaces_fail_early():
    with pytest.raises(ValueError, match="Box\\) action space"):
        PolyGRAD("MlpPolicy", IdentityEnv(4))
    with pytest.raises(ValueError, match="image and Dict"):
        PolyGRAD("MlpPolicy", FakeImageEnv(discrete=False))
    with pytest.raises(ValueError, match="image and Dict"):
        PolyGRAD("MlpPolicy", SimpleMultiObsEnv(random_start=False, discrete_actions=False))
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1))
    with pytest.raises(ValueError, match="VecNormalize"):
        PolyGRAD("MlpPolicy", env)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(horizon=1), "horizon"),
        (dict(batch_size=0), "batch_size"),
        (dict(imagination_kwargs=dict(guidance_scale=-1.0)), "guidance_scale"),
        (dict(imagination_kwargs=dict(guidance_type="gradient")), "guidance_type"),
        (dict(denoiser="unet"), "denoiser"),
        (dict(actor_critic_kwargs=dict(line_search_ratio=1.5)), "actor_critic_kwargs\\['line_search_ratio'\\]"),
        (dict(learning_starts=5, horizon=10), "learning_starts"),
        (dict(n_sampling_steps=200), "n_sampling_steps"),
        (dict(world_model_kwargs=dict(denoiser_kwargs=dict(widht=3))), "widht"),
        (dict(imagination="simulator"), "MuJoCo"),
        (dict(imagination="sequential"), "causal_mlp"),
        (dict(imagination_kwargs=dict(start_window=0)), "imagination_kwargs\\['start_window'\\] must be"),
        (
            dict(imagination_kwargs=dict(start_window=9)),
            "imagination_kwargs\\['start_window'\\] \\(9\\) must hold a 10-step window",
        ),
    ],
)
def test_bad_hyperparameters_fail_early(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        PolyGRAD("MlpPolicy", "Pendulum-v1", **kwargs)


def test_questionable_settings_warn():
    with pytest.warns(UserWarning, match="tune_guidance"):
        kwargs = dict(imagination_batch_size=128, n_diffusion_steps=4)
        PolyGRAD("MlpPolicy", "Pendulum-v1", imagination_kwargs=dict(guidance_type="none"), **kwargs)
    with pytest.warns(UserWarning, match="horizon"):
        PolyGRAD(
            "MlpPolicy",
            "Pendulum-v1",
            horizon=250,
            learning_starts=300,
            n_diffusion_steps=4,
            world_model_kwargs=dict(denoiser_kwargs=dict(hidden_dim=8, num_layers=1)),
        )


class RecordActions(gym.Wrapper):
    """Keep every action the env receives."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.received: list[np.ndarray] = []

    def step(self, action):
        self.received.append(np.array(action))
        return self.env.step(action)


def test_box_action_space_with_other_bounds_is_scaled(tiny_kwargs):
    # Pendulum acts in [-2, 2]. The buffer keeps the policy's unclipped samples in [-1, 1]-scaled units; the env must
    # receive them clipped to [-1, 1] and then unscaled to its own bounds.
    recorder = RecordActions(gym.make("Pendulum-v1"))
    model = PolyGRAD("MlpPolicy", DummyVecEnv([lambda: recorder]), seed=0, **tiny_kwargs)
    model.learn(200)
    stored = model.replay_buffer.actions[: model.replay_buffer.pos, 0]  # (200, 1), one env
    received = np.stack(recorder.received)  # (200, 1)
    assert received.shape == stored.shape
    np.testing.assert_allclose(received, 2.0 * np.clip(stored, -1.0, 1.0), atol=1e-6)
    assert np.abs(received).max() > 1.0  # the env's units, not the scaled ones
    assert np.abs(stored[: tiny_kwargs["learning_starts"]]).max() <= 1.0  # the uniform prefill
    assert np.abs(stored).max() > 1.0  # a Gaussian sample past the bound is stored as sampled, and clipped for the env


def test_a_paper_sized_polygrad_on_a_cpu_only_machine_warns_once(tiny_kwargs, monkeypatch):
    from sb3_polygrad.polygrad import device_advice

    monkeypatch.setattr(device_advice, "_warned", False)
    monkeypatch.setattr(th.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="env steps per hour") as record:
        PolyGRAD("MlpPolicy", "Pendulum-v1", device="cpu")
    assert "-conf sb3_polygrad.zoo.cpu" in str(record[0].message) and "hyperparams/polygrad.yml" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        PolyGRAD("MlpPolicy", "Pendulum-v1", device="cpu")  # once per process
        monkeypatch.setattr(device_advice, "_warned", False)
        PolyGRAD("MlpPolicy", "Pendulum-v1", device="cpu", **tiny_kwargs)  # CPU-sized: no warning


def test_compiled_imagination_on_a_cpu_without_a_cpp_compiler_is_rejected_when_built(tiny_kwargs, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
        PolyGRAD("MlpPolicy", "Pendulum-v1", device="cpu", imagination_kwargs=dict(compile=True), **tiny_kwargs)
    PolyGRAD("MlpPolicy", "Pendulum-v1", device="cpu", **tiny_kwargs)  # eager imagination needs none
    monkeypatch.setenv("CXX", "sh")  # a $CXX that exists is taken as the compiler
    monkeypatch.setenv("PATH", "/bin:/usr/bin")
    PolyGRAD("MlpPolicy", "Pendulum-v1", device="cpu", imagination_kwargs=dict(compile=True), **tiny_kwargs)


def test_normalized_returns_train_log_their_statistics_and_survive_save_and_load(tiny_kwargs, tmp_path):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, actor_critic_kwargs={"normalize_returns": True}, **tiny_kwargs)
    spy = Spy()
    model.learn(300, callback=spy)
    critic = model.policy.critic
    # Pendulum's rewards are negative: the returns' mean is too, and the critic's values follow it.
    assert spy.recorded["train/return_mean"] == critic.return_mean.item() < 0
    assert spy.recorded["train/return_std"] == critic.return_std.item() > 0
    assert critic.return_mean.item() == model.policy.critic_target.return_mean.item()
    model.save(tmp_path / "model")
    loaded = PolyGRAD.load(tmp_path / "model")
    assert loaded.policy.critic.return_std.item() == critic.return_std.item()
    assert loaded.policy.critic.return_second_moment.item() == critic.return_second_moment.item()
    plain = Spy()
    PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs).learn(300, callback=plain)
    assert "train/critic_loss" in plain.recorded and "train/return_mean" not in plain.recorded


def test_a_critic_given_real_windows_learns_from_those_imagination_started_from(tiny_kwargs):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, actor_critic_kwargs={"real_vf_coef": 0.5}, **tiny_kwargs)
    seen = []
    step = model.learner.step

    def spy_step(traj: Any, cfg: Any, lr: float, max_lr: float, real: Any) -> Any:
        seen.append((traj, real))
        return step(traj, cfg, lr, max_lr, real)

    model.learner.step = spy_step  # type: ignore[method-assign]
    spy = Spy()
    model.learn(300, callback=spy)
    assert seen and spy.recorded["train/real_critic_loss"] > 0
    for imagined, real in seen:
        assert th.equal(real.observations[:, 0], imagined.observations[:, 0])  # the real start states
        assert real.rewards.shape == imagined.rewards.shape
