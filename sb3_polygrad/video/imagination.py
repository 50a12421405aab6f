"""The world model's imagination beside the simulator's truth: a PolyGRAD model's video, one start state after another.

Each clip starts from a real state. The left panel draws the trajectory the world model imagines under the policy's
guidance; the right panel replays the same imagined actions open loop in MuJoCo from the same state (the comparison of
the paper's world-model error, section 4.4), so every gap between the panels is a world-model error.

Shape letters: ``B`` start states, ``H`` horizon, ``T`` imagined steps, ``O`` obs dim, ``A`` action dim, ``S`` simulator-state
size."""

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from sb3_polygrad.polygrad.polygrad import PolyGRAD
from sb3_polygrad.video.frames import compose_panels, render_states
from sb3_polygrad.video.states import ObservationLayout, StateRollout, hold_after_termination, replay_states

PANEL_TITLES = ("Imagined (world model)", "Real (MuJoCo, same actions)")


def buffer_start_states(model: PolyGRAD, n: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Start states of real windows from the model's replay buffer (the states imagination starts from in training).

    :param model: a PolyGRAD model whose buffer holds simulator states (a MuJoCo env)
    :param n: number of start states
    :return: observations, shape (n, O), and simulator states, shape (n, S)
    """
    batch = model.replay_buffer.sample_windows(n, model.horizon)
    if batch.sim_states is None:
        raise ValueError("The replay buffer holds no simulator states: videos need a MuJoCo env built from a registered id")
    return batch.observations[:, 0].cpu().numpy(), batch.sim_states[:, 0].cpu().numpy().astype(np.float64)


def policy_start_states(
    model: PolyGRAD, env: gym.Env, n: int, warmup_steps: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """
    Start states reached by running the model's policy in the env, for a model saved without its replay buffer.

    :param model: a PolyGRAD model
    :param env: a MuJoCo env of the model's task
    :param n: number of start states, each from its own episode (reset with ``seed + i``)
    :param warmup_steps: policy steps before the start state, so that the body is in motion; an episode that ends
        sooner gives its last state before the end
    :param seed: seed of the first reset
    :return: observations, shape (n, O), and simulator states, shape (n, S)
    """
    unwrapped: Any = env.unwrapped
    observations, sim_states = [], []
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        sim_state = unwrapped.state_vector()
        for _ in range(warmup_steps):
            action, _ = model.predict(obs, deterministic=False)
            next_obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
            obs, sim_state = next_obs, unwrapped.state_vector()
        observations.append(obs)
        sim_states.append(sim_state)
    return np.stack(observations).astype(np.float32), np.stack(sim_states)


def imagine_chained(
    model: PolyGRAD, obs0: th.Tensor, n_segments: int, generator: th.Generator | None = None
) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """
    Imagine ``n_segments`` horizons back to back, each starting from the last state the previous one imagined, as the
    model's actor-critic imagines them (``PolyGRAD.imagine``: its imagination method and terminal flags).

    A segment's last action has no imagined successor, so it is dropped and the next segment draws the action at that
    state afresh: the result has ``T = n_segments * (H - 1)`` steps.

    :param model: a PolyGRAD model
    :param obs0: real start states, shape (B, O)
    :param n_segments: number of horizons
    :param generator: random generator of the sampler
    :return: observations (B, T + 1, O), actions in scaled units (B, T, A), rewards (B, T) and terminal flags (B, T)
    """
    segments, start = [], obs0
    for _ in range(n_segments):
        trajectory = model.imagine(start, generator)
        segments.append(trajectory)
        start = trajectory.observations[:, -1]
    observations = th.cat([obs0[:, None], *(s.observations[:, 1:] for s in segments)], dim=1)  # (B, T + 1, O)
    actions = th.cat([s.actions[:, :-1] for s in segments], dim=1)  # (B, T, A)
    rewards = th.cat([s.rewards[:, :-1] for s in segments], dim=1)  # (B, T)
    dones = th.cat([s.dones[:, :-1] for s in segments], dim=1)  # (B, T)
    return observations, actions, rewards, dones


def _captions(rollout: StateRollout) -> tuple[list[str], list[bool]]:
    """Per frame: the step, the return so far, and whether the episode has ended."""
    returns = np.concatenate([[0.0], np.cumsum(rollout.rewards)])
    ended = np.concatenate([[False], rollout.terminated])
    captions = [
        f"t={k}  return {ret:.2f}" + ("  ended" if end else "")
        for k, (ret, end) in enumerate(zip(returns, ended, strict=True))
    ]
    return captions, ended.tolist()


def imagination_video(
    model: PolyGRAD,
    env: gym.Env,
    obs0: np.ndarray,
    start_sim_states: np.ndarray,
    n_segments: int = 1,
    fps: float = 10.0,
    pause: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """
    Imagined against real rollouts from each start state, side by side and labelled, one clip after another.

    :param model: a PolyGRAD model of the env's task
    :param env: an env from ``make_render_env`` (its frame size is the panels' size)
    :param obs0: start observations, shape (B, O)
    :param start_sim_states: the matching simulator states, shape (B, S)
    :param n_segments: horizons imagined back to back from each start state
    :param fps: playback rate, for the slow-motion factor in the header
    :param pause: seconds the last frame of each clip is held
    :param seed: seed of the sampler
    :return: the video, shape (frames, height, width, 3)
    """
    layout = ObservationLayout.from_env(env)
    generator = th.Generator(device=model.device).manual_seed(seed)
    obs0_t = th.as_tensor(obs0, dtype=th.float32, device=model.device)
    observations, actions, rewards, dones = (
        x.detach().cpu().numpy() for x in imagine_chained(model, obs0_t, n_segments, generator)
    )
    env_actions = model.policy.unscale_action(np.clip(actions, -1.0, 1.0))
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    slow_motion = 1.0 / (layout.dt * fps)
    clips = []
    for i, start in enumerate(start_sim_states):
        imagined = hold_after_termination(
            StateRollout(layout.to_sim_states(observations[i], start), rewards[i], dones[i] > 0.5)
        )
        real = replay_states(env, start, env_actions[i])
        labels = [_captions(imagined), _captions(real)]
        clip = compose_panels(
            [render_states(env, imagined.sim_states), render_states(env, real.sim_states)],
            PANEL_TITLES,
            [captions for captions, _ in labels],
            alerts=[ended for _, ended in labels],
            header=f"{name}  start {i + 1}/{len(start_sim_states)}  ({slow_motion:.0f}x slow motion)",
        )
        hold = np.repeat(clip[-1:], round(pause * fps), axis=0)
        clips.extend([clip, hold])
    return np.concatenate(clips)
