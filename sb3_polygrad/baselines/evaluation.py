"""Side-by-side evaluation of world models: the open-loop simulator-replay error and the cost of imagination."""

import time

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

from sb3_polygrad.baselines.base import ComparisonWorldModel
from sb3_polygrad.common.simulator import open_loop_errors
from sb3_polygrad.world_model.sampler import GuidancePolicy
from sb3_polygrad.world_model.types import WindowSamples


def open_loop_evaluation(
    model: ComparisonWorldModel, policy: GuidancePolicy, env: gym.Env, windows: WindowSamples, horizon: int
) -> dict[str, np.ndarray | float]:
    """
    Imagine from the first state of each real window and replay the imagined actions in the simulator from the recorded
    state there (``open_loop_errors``, the paper's metric, section 4.4).

    :param model: the world model
    :param policy: the policy the model imagines with
    :param env: a MuJoCo env of the dataset's task, reset at least once
    :param windows: real windows with simulator states (only row 0 is used)
    :param horizon: H, rows of the imagined trajectories
    :return: ``state_mse`` (H,), ``reward_mse`` of the first step and ``count`` (H,), as ``open_loop_errors``
    """
    if windows.sim_states is None:
        raise ValueError("the windows carry no simulator states: the dataset cannot be replayed")
    space = env.action_space
    assert isinstance(space, spaces.Box)
    trajectory = model.imagine(windows.observations[:, 0], policy, horizon)
    start_sim_states = windows.sim_states[:, 0].cpu().numpy().astype(np.float64)
    return open_loop_errors(env, trajectory, start_sim_states, space.low, space.high)


def time_imagination(
    model: ComparisonWorldModel, policy: GuidancePolicy, start_states: th.Tensor, horizon: int, repeats: int = 2
) -> float:
    """
    Wall-clock seconds of one ``imagine`` call on the whole batch, the fastest of ``repeats`` calls after a small
    warm-up call (which pays one-off costs: allocator growth, kernel selection).

    :param model: the world model
    :param policy: the policy
    :param start_states: raw start states, shape (B, O)
    :param horizon: H, rows of each trajectory
    :param repeats: timed calls
    :return: seconds
    """
    device = start_states.device
    model.imagine(start_states[:8], policy, horizon)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            th.cuda.synchronize(device)
        start = time.perf_counter()
        model.imagine(start_states, policy, horizon)
        if device.type == "cuda":
            th.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)
