"""Refuse a non-finite observation or reward where it leaves the env, before the policy, the replay buffer, the
normaliser or the world model sees it: one NaN there is copied into every statistic and window that includes it, and
from the policy's action back into the env, far from the step that caused it."""

from typing import Any

import numpy as np


def refuse_non_finite(output: str, values: np.ndarray, num_timesteps: int, envs: list[int] | None = None) -> None:
    """
    :param output: what the env returned, as the message names it
    :param values: one value (or array) per env along the first axis
    :param num_timesteps: the algorithm's step count once the step that returned them is counted
    :param envs: the env index of each row of ``values`` (``None``: row i is env i)
    :raises ValueError: naming ``output``, the step and the envs, where a value is NaN or infinite
    """
    values = np.asarray(values, dtype=np.float64)
    broken = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
    if len(broken):
        env_indices = broken.tolist() if envs is None else [envs[row] for row in broken]
        raise ValueError(
            f"The env returned a non-finite {output} (NaN or inf) at num_timesteps={num_timesteps}, in env(s) "
            f"{env_indices}: PolyGRAD refuses it before the policy, the replay buffer or the world model use it. Fix "
            "the env, or end its episodes before the state diverges"
        )


def check_step(observations: np.ndarray, rewards: np.ndarray, infos: list[dict[str, Any]], num_timesteps: int) -> None:
    """
    Check what ``VecEnv.step`` returned: the observations (for an env whose episode ended, the first of the next),
    the rewards, and the last observation of each ended episode (``infos[i]["terminal_observation"]``).

    :param observations: shape (n_envs, O)
    :param rewards: shape (n_envs,)
    :param infos: one dict per env
    :param num_timesteps: the algorithm's step count, this step included
    """
    refuse_non_finite("observation", observations, num_timesteps)
    refuse_non_finite("reward", rewards, num_timesteps)
    ended = [i for i, info in enumerate(infos) if info.get("terminal_observation") is not None]
    if ended:
        terminal = np.stack([infos[i]["terminal_observation"] for i in ended])
        refuse_non_finite("terminal observation", terminal, num_timesteps, ended)
