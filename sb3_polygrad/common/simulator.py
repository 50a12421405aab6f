"""The simulator as ground truth: replay actions from a recorded state (the open-loop error metric) and roll the policy
out from recorded start states (`imagination="simulator"`)."""

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.vec_env import VecEnv

from sb3_polygrad.world_model.types import ImaginedTrajectory


def make_simulator_env(venv: VecEnv, seed: int | None) -> gym.Env | None:
    """
    A fresh, unwrapped instance of the task ``venv`` runs, reset once, to replay and roll out from recorded states (the
    spec's own wrappers, such as ``Monitor``, cannot be rebuilt, nor are needed).

    :param venv: the training env
    :param seed: the seed of the reset
    :return: the env, or ``None`` where ``venv`` was not built from a registered id
    """
    spec = venv.get_attr("spec")[0]
    if spec is None:
        return None
    env = gym.make(spec.id, **spec.kwargs)
    env.reset(seed=seed)
    return env


def supports_sim_state(env: gym.Env) -> bool:
    """Whether ``env`` is a MuJoCo env whose state can be read (``state_vector``) and set (``set_state``)."""
    unwrapped: Any = env.unwrapped
    return hasattr(unwrapped, "state_vector") and hasattr(unwrapped, "set_state") and hasattr(unwrapped, "model")


def set_sim_state(env: gym.Env, sim_state: np.ndarray) -> None:
    """Set a MuJoCo env to ``sim_state = [qpos, qvel]`` (as returned by ``state_vector``)."""
    unwrapped: Any = env.unwrapped
    nq = unwrapped.model.nq
    # The solver's warm start would otherwise carry over from the previous replay, and replays would differ at 1e-16.
    unwrapped.data.qacc_warmstart[:] = 0.0
    unwrapped.set_state(sim_state[:nq], sim_state[nq:])


def to_env_actions(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map actions in SB3's scaled units to the env's bounds, clipping to [-1, 1] first as the env's wrapper does."""
    return low + 0.5 * (np.clip(actions, -1.0, 1.0) + 1.0) * (high - low)


def replay_actions(env: gym.Env, sim_state: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """
    Replay actions open loop from a simulator state.

    :param env: a MuJoCo env (reset at least once)
    :param sim_state: ``[qpos, qvel]`` at the start
    :param actions: env actions, shape (T, A)
    :return: the observations after each step (T, O), the rewards (T,), the number of steps taken (up to and including
        the one that terminated the episode), and whether the episode terminated
    """
    set_sim_state(env, sim_state)
    observations, rewards = [], []
    for k, action in enumerate(actions):
        obs, reward, terminated, _, _ = env.unwrapped.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated:
            pad = len(actions) - k - 1
            return np.array(observations + [obs] * pad), np.array(rewards + [0.0] * pad), k + 1, True
    return np.array(observations), np.array(rewards), len(actions), False


def open_loop_errors(
    env: gym.Env, trajectory: ImaginedTrajectory, start_sim_states: np.ndarray, action_low: np.ndarray, action_high: np.ndarray
) -> dict[str, np.ndarray | float]:
    """
    The paper's world-model error (section 4.4): replay each imagined trajectory's actions in the simulator from the
    recorded state of its start, and compare imagined and true states step by step, in raw units.

    Steps after the true episode terminates are left out of the state error.

    :param env: a MuJoCo env of the same task (reset at least once)
    :param trajectory: imagined trajectories with actions in SB3's scaled units [-1, 1]
    :param start_sim_states: simulator state at each trajectory's start, shape (B, S)
    :param action_low: lower bound of the env's actions
    :param action_high: upper bound of the env's actions
    :return: ``state_mse`` (H,) mean over trajectories and state dimensions at each step (0 at step 0, the real start
        state), ``reward_mse`` of the first step, ``count`` (H,) trajectories alive at each step, and
        ``termination_rate``: the share of trajectories whose replayed episode terminates within the window
    """
    obs = trajectory.observations.detach().cpu().numpy()
    env_actions = to_env_actions(trajectory.actions.detach().cpu().numpy(), action_low, action_high)
    rewards = trajectory.rewards.detach().cpu().numpy()
    horizon = obs.shape[1]
    sq_err, count, reward_err, n_terminated = np.zeros(horizon), np.zeros(horizon), [], 0
    for i in range(obs.shape[0]):
        true_obs, true_rewards, alive, terminated = replay_actions(env, start_sim_states[i], env_actions[i, :-1])
        n_terminated += terminated
        # true_obs[k - 1] is s_k; the error is compared for s_1..s_alive.
        sq_err[1 : alive + 1] += ((obs[i, 1 : alive + 1] - true_obs[:alive]) ** 2).mean(axis=-1)
        count[0 : alive + 1] += 1
        reward_err.append((rewards[i, 0] - true_rewards[0]) ** 2)
    return {
        "state_mse": sq_err / np.maximum(count, 1),
        "reward_mse": float(np.mean(reward_err)),
        "count": count,
        "termination_rate": n_terminated / obs.shape[0],
    }


def simulator_rollouts(
    envs: list[gym.Env],
    sample_actions: Callable[[th.Tensor], th.Tensor],
    obs0: th.Tensor,
    start_sim_states: np.ndarray,
    horizon: int,
    action_low: np.ndarray,
    action_high: np.ndarray,
) -> ImaginedTrajectory:
    """
    On-policy rollouts in the simulator itself from recorded start states, laid out as an imagined batch: what PolyGRAD's
    imagination would return with a perfect world model (``PolyGRAD(imagination="simulator")``).

    After a termination the batch is padded as the replay buffer pads real windows: state held, reward 0, terminal 1.

    :param envs: one MuJoCo env of the task per trajectory (each reset at least once)
    :param sample_actions: the policy's unclipped action samples in scaled units, (B, O) -> (B, A)
    :param obs0: the recorded start observations, shape (B, O)
    :param start_sim_states: the simulator state at each start, shape (B, S)
    :param horizon: H, steps per trajectory (H - 1 simulated transitions and the last state's action)
    :param action_low: lower bound of the env's actions
    :param action_high: upper bound of the env's actions
    :return: trajectories of length H on ``obs0``'s device
    """
    batch = obs0.shape[0]
    if len(envs) < batch:
        raise ValueError(f"{batch} rollouts need {batch} envs, got {len(envs)}")
    observations = th.zeros((batch, horizon, obs0.shape[1]), dtype=th.float32, device=obs0.device)
    observations[:, 0] = obs0
    actions, rewards, dones = [], np.zeros((batch, horizon)), np.zeros((batch, horizon))
    alive = np.ones(batch, dtype=bool)
    for env, sim_state in zip(envs, start_sim_states, strict=False):
        set_sim_state(env, sim_state)
    for k in range(horizon):
        with th.no_grad():
            actions.append(sample_actions(observations[:, k]))
        if k == horizon - 1:
            break  # the last state only bootstraps: its action is drawn, as in imagination, and not simulated
        env_actions = to_env_actions(actions[-1].cpu().numpy(), action_low, action_high)
        next_obs = observations[:, k].cpu().numpy().copy()  # a terminated rollout holds its state
        for i in np.flatnonzero(alive):
            next_obs[i], rewards[i, k], terminated, _, _ = envs[i].unwrapped.step(env_actions[i])
            alive[i] = not terminated
        dones[:, k] = ~alive
        observations[:, k + 1] = th.as_tensor(next_obs, device=obs0.device)
    dones[:, -1] = ~alive
    return ImaginedTrajectory(
        observations=observations,
        actions=th.stack(actions, dim=1),
        rewards=th.as_tensor(rewards, dtype=th.float32, device=obs0.device),
        dones=th.as_tensor(dones, dtype=th.float32, device=obs0.device),
    )
