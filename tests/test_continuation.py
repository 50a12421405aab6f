"""Continuing a run: after ``load`` (with or without the replay buffer), after ``set_env`` and with a second ``learn``."""

import itertools
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_polygrad import PolyGRAD

EPISODE_IDS = itertools.count()


class CounterEnv(gym.Env):
    """Observations ``[episode id, step]``, the id unique over all instances: a window of consecutive steps of one
    episode has a constant first column. Episodes are truncated after ``length`` steps and never terminate."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, length: int = 40) -> None:
        self.length = length
        self.episode, self.t = -1, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode, self.t = next(EPISODE_IDS), 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._obs(), float(self.t % 7), False, self.t >= self.length, {}


def counter_envs(n_envs: int) -> DummyVecEnv:
    return make_vec_env(CounterEnv, n_envs=n_envs, seed=0)


def assert_no_window_joins_episodes(model: PolyGRAD) -> None:
    np.random.seed(0)
    batch = model.replay_buffer.sample_windows(4000, model.horizon)
    episode = batch.observations[:, :, 0].numpy()
    joined = (episode != episode[:, :1]).any(axis=1)
    assert not joined.any(), f"{joined.mean():.1%} of the windows join two episodes"
    assert batch.terminals.sum() == 0  # the env never terminates: a closed row is a truncation


def save_and_load_with_buffer(model: PolyGRAD, path) -> PolyGRAD:
    model.save(path / "model.zip")
    model.save_replay_buffer(path / "buffer.pkl")
    loaded = PolyGRAD.load(path / "model.zip", env=counter_envs(model.n_envs))
    loaded.load_replay_buffer(path / "buffer.pkl")
    return loaded


RESETS: dict[str, Callable[[PolyGRAD, object], tuple[PolyGRAD, bool]]] = {
    # each returns the model to continue and the reset_num_timesteps of its next learn()
    "second_learn_with_reset_num_timesteps": lambda model, path: (model, True),
    "set_env": lambda model, path: (model.set_env(counter_envs(model.n_envs)) or model, False),
    "load_with_replay_buffer": lambda model, path: (save_and_load_with_buffer(model, path), False),
}


@pytest.mark.parametrize("n_envs", [1, 2])
@pytest.mark.parametrize("reset", list(RESETS))
def test_an_env_reset_by_sb3_closes_the_open_episode_as_a_truncation(reset, n_envs, tiny_kwargs, tmp_path):
    model = PolyGRAD("MlpPolicy", counter_envs(n_envs), seed=0, **tiny_kwargs)
    model.learn(150)
    buffer = model.replay_buffer
    last = buffer.pos - 1
    assert (buffer.dones[last] == 0).all()  # every env is within an episode (40 steps) when learn() returns

    model, reset_num_timesteps = RESETS[reset](model, tmp_path)
    model.learn(100, reset_num_timesteps=reset_num_timesteps)
    buffer = model.replay_buffer
    # the row before the reset ends its episode, for every env, as a time limit would
    assert (buffer.dones[last] == 1).all() and (buffer.timeouts[last] == 1).all()
    assert buffer.pos > last + 1
    assert_no_window_joins_episodes(model)


def test_learning_continues_after_load_without_the_replay_buffer(tiny_kwargs, tmp_path):
    # train_freq 2 < horizon 4: SB3 calls train() after 2 steps in the new, empty buffer
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **{**tiny_kwargs, "train_freq": 2})
    model.learn(200)
    model.save(tmp_path / "model.zip")
    loaded = PolyGRAD.load(tmp_path / "model.zip", env=make_vec_env("Pendulum-v1", n_envs=1, seed=1))
    world_model_updates, agent_updates = int(loaded.world_model.n_updates), loaded._n_updates

    rows_at_train = []
    train = loaded.train

    def spy(gradient_steps: int, batch_size: int) -> None:
        rows_at_train.append(loaded.replay_buffer.pos)
        train(gradient_steps, batch_size)

    loaded.train = spy  # type: ignore[method-assign]
    # A learn() too short to fill the buffer ends without training, and says why once.
    with pytest.warns(UserWarning, match="windows") as warned:
        loaded.learn(12, reset_num_timesteps=False)
        assert loaded.num_timesteps == 212 and rows_at_train == []
        loaded.learn(100, reset_num_timesteps=False)
    assert loaded.num_timesteps == 312
    assert len([w for w in warned if "windows" in str(w.message)]) == 1
    # Training resumed once the new buffer held a batch of 4-step windows (Pendulum episodes are 200 steps long).
    horizon, batch_size = tiny_kwargs["horizon"], tiny_kwargs["batch_size"]
    assert rows_at_train and min(rows_at_train) - horizon + 1 >= batch_size
    assert int(loaded.world_model.n_updates) > world_model_updates and loaded._n_updates > agent_updates
