"""A non-finite observation or reward is refused at the step the env returns it, before anything uses it."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_polygrad import PolyGRAD


class BreakingEnv(gym.Env):
    """Returns ``bad`` in one of its outputs at env step ``at`` (1-based, over all episodes; 0: the first reset) and
    records every action it receives. Episodes are truncated after 50 steps."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, output: str, at: int, bad: float) -> None:
        self.output, self.at, self.bad = output, at, bad
        self.steps, self.t = 0, 0
        self.actions: list[np.ndarray] = []

    def _obs(self, broken: bool) -> np.ndarray:
        return np.array([self.t / 50, self.bad if broken else np.sin(self.t)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(self.output == "reset" and self.steps == self.at), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.actions.append(np.array(action))
        self.steps += 1
        self.t += 1
        broken = self.steps == self.at
        truncated = self.t >= 50 or (broken and self.output == "terminal")
        reward = self.bad if broken and self.output == "reward" else float(np.cos(self.t))
        return self._obs(broken and self.output in ("observation", "terminal")), reward, False, truncated, {}


@pytest.mark.parametrize(
    "output, at, bad, message",
    [
        ("observation", 130, np.nan, "observation"),  # after learning_starts: the policy acts on what it is given
        ("observation", 30, np.inf, "observation"),
        ("reward", 130, np.nan, "reward"),
        ("reward", 30, -np.inf, "reward"),
        ("terminal", 130, np.nan, "terminal observation"),  # the last observation of an episode, kept in infos
        ("reset", 0, np.nan, "observation from reset"),
    ],
)
def test_a_non_finite_env_output_is_refused_at_its_step(output, at, bad, message, tiny_kwargs):
    env = BreakingEnv(output, at, bad)
    model = PolyGRAD("MlpPolicy", DummyVecEnv([lambda: env]), seed=0, **tiny_kwargs)
    with pytest.raises(ValueError, match=rf"non-finite {message}\b.*at num_timesteps={at}\b"):
        model.learn(200)
    # Nothing after the step that returned it: no further action reached the env, and nothing non-finite the policy,
    # the replay buffer or the normaliser.
    assert len(env.actions) == at and np.isfinite(env.actions).all()
    buffer = model.replay_buffer
    assert buffer.pos == max(at - 1, 0)
    for stored in (buffer.observations, buffer.next_observations, buffer.rewards, buffer.actions):
        assert np.isfinite(stored[: buffer.pos]).all()
    assert model.world_model.normalizer.observations.count.item() == buffer.pos
