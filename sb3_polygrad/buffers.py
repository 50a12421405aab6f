"""Replay buffer of real transitions that returns H-step windows within episodes, with simulator states."""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_polygrad.world_model.types import WindowSamples


class PolyGRADReplayBuffer(ReplayBuffer):
    """
    SB3's ``ReplayBuffer`` plus ``sample_windows``: H consecutive steps of one env's episode (section 3.2).

    SB3 stores ``(buffer_size, n_envs)`` arrays, each env a column of consecutive steps, so a window is H consecutive rows
    of one column. A window never crosses an episode boundary: it may run past a termination, and the rows after it are
    padding (terminal 1, state held at the terminal state, reward 0, action held), so the world model learns that a
    terminated episode stays terminated; it may not run past a time-limit truncation (the future is unknown, and a
    truncation is not a termination), nor past the write position. Windows are drawn uniformly over all valid windows
    by rejection sampling, which wastes little: only the windows that straddle a truncation or the write head are invalid.

    The simulator state (MuJoCo ``qpos``, ``qvel``) in which each action was taken is stored when the algorithm passes it
    in ``infos[i]["sim_state"]``, so that imagined trajectories can be replayed in the simulator.

    :param buffer_size: maximum number of transitions (over all envs)
    :param observation_space: observation space
    :param action_space: action space
    :param device: device of the sampled tensors
    :param n_envs: number of parallel envs
    :param optimize_memory_usage: not supported (windows need ``next_observations``)
    :param handle_timeout_termination: must stay ``True``: truncations must not be read as terminations
    """

    sim_states: np.ndarray | None

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
    ) -> None:
        if optimize_memory_usage or not handle_timeout_termination:
            raise ValueError(
                "PolyGRADReplayBuffer needs optimize_memory_usage=False and handle_timeout_termination=True: windows are "
                "padded with the terminal observation, and truncations must not be read as terminations"
            )
        super().__init__(buffer_size, observation_space, action_space, device, n_envs, False, True)
        self.sim_states = None

    def add(  # type: ignore[override]
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        if infos and all("sim_state" in info for info in infos):
            states = np.stack([info["sim_state"] for info in infos])  # (n_envs, S)
            if self.sim_states is None:
                self.sim_states = np.zeros((self.buffer_size, self.n_envs, states.shape[-1]), dtype=np.float64)
            self.sim_states[self.pos] = states
        super().add(obs, next_obs, action, reward, done, infos)

    def n_stored(self) -> int:
        """Number of rows written per env (the buffer holds ``n_stored() * n_envs`` transitions)."""
        return self.buffer_size if self.full else self.pos

    def _oldest_row(self) -> int:
        """The row written first among those the ring holds (age 0)."""
        return self.pos if self.full else 0

    def truncate_open_episodes(self) -> None:
        """
        End the episode each env is in at the write head as a time-limit truncation, before the envs are reset outside
        an episode end (SB3 resets them in ``learn`` after ``load`` or ``set_env``, and with ``reset_num_timesteps``):
        otherwise the next row reads as the continuation of the last one, and windows join two episodes. A truncation,
        not a termination: the episode was cut, it did not end. A last row that already ends its episode is kept as is.
        """
        if self.n_stored() == 0:
            return
        last = (self.pos - 1) % self.buffer_size
        still_open = self.dones[last] == 0  # (n_envs,)
        self.dones[last, still_open] = 1.0
        self.timeouts[last, still_open] = 1.0

    def n_valid_windows(self, horizon: int) -> int:
        """
        Number of distinct windows ``sample_windows`` can draw, over all envs: a window is valid if the first episode
        end in its rows ``0..H-2`` is a termination, or if it has no such end and lies before the write head.

        :param horizon: H, length of each window
        :return: the number of valid windows
        """
        n_rows = self.n_stored()
        first_row = self._oldest_row()
        by_age = (first_row + np.arange(n_rows)) % self.buffer_size  # (n_rows,), oldest row first
        ended = self.dones[by_age] > 0  # (n_rows, n_envs)
        age = np.arange(n_rows)[:, None]  # (n_rows, 1)
        # Age of the first episode end at or after each age, per env (n_rows where there is none): a reverse running min.
        next_end = np.minimum.accumulate(np.where(ended, age, n_rows)[::-1], axis=0)[::-1]
        cut = (next_end < n_rows) & (next_end <= age + horizon - 2)
        envs = np.arange(self.n_envs)
        end_is_truncation = self.timeouts[by_age[np.minimum(next_end, n_rows - 1)], envs] > 0
        valid = np.where(cut, ~end_is_truncation, age + horizon - 1 < n_rows)
        return int(valid.sum())

    def _draw_windows(
        self, n: int, horizon: int, rng: np.random.Generator | None, newest_rows: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw ``n`` candidate windows, starting in the ``newest_rows`` newest rows (``None``: any row); return their row
        indices (n, H), env indices (n,) and validity (n,)."""
        n_rows = self.n_stored()
        first_row = self._oldest_row()
        oldest_start = 0 if newest_rows is None else max(n_rows - newest_rows, 0)
        randint = np.random.randint if rng is None else rng.integers
        age = randint(oldest_start, n_rows, size=n)[:, None] + np.arange(horizon)  # (n, H), 0 = oldest row
        rows = (first_row + age) % self.buffer_size
        envs = randint(0, self.n_envs, size=n)
        written = age < n_rows
        ended = (self.dones[rows, envs[:, None]] > 0) & written  # (n, H)
        # Only an episode end before the last row cuts the window (the last row's own flag is just data).
        cut = ended[:, :-1]
        has_end = cut.any(axis=1)
        first_end = cut.argmax(axis=1)
        truncated = self.timeouts[rows[np.arange(n), first_end], envs] > 0
        valid = np.where(has_end, ~truncated, written[:, -1])
        return rows, envs, valid

    @staticmethod
    def check_newest(name: str, newest: int, horizon: int, n_envs: int) -> None:
        """
        :param name: the argument, as the error names it
        :param newest: a number of newest transitions to draw windows from, over all envs
        :param horizon: H, length of each window
        :param n_envs: number of parallel envs
        :raises ValueError: where ``newest`` does not hold an H-step window in each env
        """
        if newest // n_envs < horizon:
            raise ValueError(
                f"{name} ({newest}) must hold a {horizon}-step window in each of the {n_envs} env(s): "
                f"at least {horizon * n_envs}"
            )

    def sample_windows(
        self, batch_size: int, horizon: int, rng: np.random.Generator | None = None, newest: int | None = None
    ) -> WindowSamples:
        """
        Sample real H-step windows uniformly over all valid windows, or over those that start among the newest
        transitions.

        :param batch_size: number of windows
        :param horizon: H, length of each window
        :param rng: random generator to draw from (``None``: NumPy's global one, which SB3's seeding sets)
        :param newest: draw only windows that start among the newest ``newest`` transitions, over all envs (as
            ``buffer_size`` counts them: each env's newest ``newest // n_envs``); ``None``: any window
        :return: windows as float32 tensors on the buffer's device
        """
        return self.windows(*self.sample_window_rows(batch_size, horizon, rng, newest))

    def sample_window_rows(
        self, batch_size: int, horizon: int, rng: np.random.Generator | None = None, newest: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Where ``sample_windows`` draws its windows (same arguments and draws): the buffer rows of each window,
        shape (B, H), and its env, shape (B,). ``windows`` reads them.
        """
        if horizon < 2:
            raise ValueError(f"horizon must be >= 2, got {horizon}")
        if newest is not None:
            self.check_newest("newest", newest, horizon, self.n_envs)
        newest_rows = None if newest is None else newest // self.n_envs
        rows_l, envs_l, found = [], [], 0
        for _ in range(100):
            rows, envs, valid = self._draw_windows(2 * batch_size, horizon, rng, newest_rows)
            rows_l.append(rows[valid])
            envs_l.append(envs[valid])
            found += int(valid.sum())
            if found >= batch_size:
                break
        else:
            raise RuntimeError(
                f"The replay buffer holds too few {horizon}-step windows (found {found} of {batch_size} in 100 tries): "
                "collect more steps before training (raise learning_starts) or use a shorter horizon"
            )
        return np.concatenate(rows_l)[:batch_size], np.concatenate(envs_l)[:batch_size]

    def env_steps_of_rows(self, rows: np.ndarray, n_timesteps: int) -> np.ndarray:
        """
        :param rows: buffer rows
        :param n_timesteps: env steps taken so far, over all envs (``num_timesteps`` of the algorithm that filled it)
        :return: for each row, the env step (over all envs) at which its transitions were recorded, approximately:
            the ``n_envs`` transitions of a row are counted as one time
        """
        first_row = self._oldest_row()
        age = (rows - first_row) % self.buffer_size  # 0 = oldest row
        return n_timesteps - (self.n_stored() - age) * self.n_envs

    def windows(self, rows: np.ndarray, envs: np.ndarray) -> WindowSamples:
        """
        :param rows: the buffer rows of each window, shape (B, H), as ``sample_window_rows`` draws them
        :param envs: the env of each window, shape (B,)
        :return: the windows as float32 tensors on the buffer's device
        """
        horizon = rows.shape[1]
        env_cols = envs[:, None]  # (B, 1)
        terminated = (self.dones[rows, env_cols] > 0) & (self.timeouts[rows, env_cols] == 0)  # (B, H)
        # Rows after the first termination (within rows 0..H-2) are padding; they hold the terminating row's data.
        after_end = np.cumsum(terminated[:, :-1], axis=1) > 0  # (B, H-1)
        padded = np.concatenate([np.zeros_like(after_end[:, :1]), after_end], axis=1)  # (B, H)
        end_row = np.where(terminated.any(axis=1), terminated.argmax(axis=1), horizon - 1)
        held = rows[np.arange(len(rows)), end_row][:, None]  # (B, 1), row of the termination
        src = np.where(padded, held, rows)  # (B, H)

        observations = np.where(padded[..., None], self.next_observations[held, env_cols], self.observations[src, env_cols])
        rewards = np.where(padded, 0.0, self.rewards[src, env_cols])
        terminals = np.where(padded, 1.0, terminated)
        # float64: a start state must be set in the simulator exactly as it was recorded
        sim_states = None if self.sim_states is None else self.to_torch(self.sim_states[src, env_cols])
        return WindowSamples(
            observations=self.to_torch(observations).float(),
            actions=self.to_torch(self.actions[src, env_cols]).float(),
            rewards=self.to_torch(rewards).float(),
            terminals=self.to_torch(terminals).float(),
            sim_states=sim_states,
        )
