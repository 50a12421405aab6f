"""
How far a trained PolyGRAD's critic is from the returns its own policy earns: along episodes of the policy in the
simulator, the critic's value of each state against the discounted return that followed it, both in the critic's units
(rewards times ``reward_scale``).

    python -m benchmarks.critic_check --model path/to/model.zip --env Hopper-v4 --name hopper

Why: the actor-critic learns its values from H-step imagined windows, bootstrapped from its own target critic, so with a
long discount (``gamma=0.999``) its values reach the returns only after many updates; the policy gradient weighs a fall
by the value it loses. The episodes run past the env's usual time limit (``--max-steps``) so that the return after an
early state is nearly whole: each row's ``tail`` is the discount weight that the episode's end cut off from it (0 when
the episode terminated, and the return is then exact).

Writes ``benchmarks/results/critic_check_<name>.md``.
"""

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th

from benchmarks.run import RESULTS
from sb3_polygrad import PolyGRAD
from sb3_polygrad.common.returns import gae

# The steps of an episode whose value and return the table gives (those the shortest episode reaches).
CHECKED_STEPS = (0, 100, 250, 500, 1000)


@dataclass
class CriticCheck:
    """What :func:`check` found: the episodes' mean length, reward per step and share terminated, and per checked step
    the mean value, return and tail."""

    length: float
    reward_per_step: float
    terminated: float
    rows: list[tuple[int, float, float, float]]


def returns_to_go(rewards: np.ndarray, gamma: float, reward_scale: float) -> np.ndarray:
    """
    ``G_t = sum_k gamma^k * reward_scale * r_{t+k}`` to the episode's end.

    :param rewards: one episode's rewards, shape (T,)
    :param gamma: discount factor
    :param reward_scale: the algorithm's factor on rewards for its actor-critic
    :return: returns, shape (T,)
    """
    # GAE with lambda 1 and zero values is the discounted return (one implementation of the recursion); the appended
    # step only closes the window.
    scaled = th.as_tensor(np.append(reward_scale * rewards, 0.0), dtype=th.float64)[None]
    zeros = th.zeros_like(scaled)
    advantages, _, _ = gae(scaled, zeros, zeros, gamma, 1.0)
    return advantages[0].numpy()


def episode(model: PolyGRAD, env: gym.Env, deterministic: bool, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """
    One episode of the model's policy.

    :return: the states it was in (T, O), its rewards (T,), and whether it terminated (rather than hit the time limit)
    """
    obs, _ = env.reset(seed=seed)
    states, rewards = [], []
    while True:
        states.append(obs)
        action, _ = model.predict(obs, deterministic=deterministic)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        if terminated or truncated:
            return np.array(states, dtype=np.float32), np.array(rewards), bool(terminated)


def check(model: PolyGRAD, env_id: str, max_steps: int, deterministic: bool, n_episodes: int) -> CriticCheck:
    """
    The critic against the returns of ``n_episodes`` episodes (seeds 0, 1, ...).

    :param model: a trained PolyGRAD
    :param env_id: the env it was trained on
    :param max_steps: the episodes' time limit
    :param deterministic: the policy's mean action (as evaluations act) or its samples (as imagination does)
    :param n_episodes: episodes to average over
    """
    env = gym.make(env_id, max_episode_steps=max_steps)
    values, returns, tails, lengths, per_step, terminated = [], [], [], [], [], []
    for seed in range(n_episodes):
        states, rewards, ended = episode(model, env, deterministic, seed)
        with th.no_grad():
            value = model.policy.predict_values(th.as_tensor(states, device=model.device)).cpu().numpy()  # (T,)
        steps = np.arange(len(rewards))
        values.append(value)
        returns.append(returns_to_go(rewards, model.gamma, model.reward_scale))
        tails.append(np.zeros(len(rewards)) if ended else model.gamma ** (len(rewards) - steps))
        lengths.append(len(rewards))
        per_step.append(rewards.mean())
        terminated.append(ended)
    env.close()

    def mean_at(t: int, figure: list[np.ndarray]) -> float:
        return float(np.mean([of_episode[t] for of_episode in figure]))

    rows = [(t, mean_at(t, values), mean_at(t, returns), mean_at(t, tails)) for t in CHECKED_STEPS if t < min(lengths)]
    return CriticCheck(float(np.mean(lengths)), float(np.mean(per_step)), float(np.mean(terminated)), rows)


def report(model: PolyGRAD, env_id: str, max_steps: int, n_episodes: int, command: str) -> str:
    """The Markdown report of :func:`check` for the mean action and for the policy's samples."""
    lines = [
        f"# Critic check on {env_id}",
        "",
        f"Command: `{command}`. The critic's value V of the states of the policy's own episodes against the discounted "
        f"return G that followed them, in the critic's units (gamma {model.gamma}, reward_scale {model.reward_scale}), "
        f"mean over {n_episodes} episodes of at most {max_steps:,} steps; tail: the discount weight the episode's end "
        "cut off from G (0 when it terminated).",
        "",
    ]
    for deterministic, name in ((True, "mean action (as evaluated)"), (False, "sampled actions (as imagined)")):
        found = check(model, env_id, max_steps, deterministic, n_episodes)
        lines += [
            f"## Policy: {name}",
            "",
            f"Episode length {found.length:,.0f}, reward per step {found.reward_per_step:.3f}, terminated "
            f"{found.terminated:.0%}.",
            "",
            "| step | V | G | V / G | tail |",
            "|---:|---:|---:|---:|---:|",
            *[f"| {t:,} | {v:.3g} | {g:.3g} | {v / g:.2f} | {w:.2f} |" for t, v, g, w in found.rows],
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a saved PolyGRAD (model.zip)")
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--name", required=True, help="the results file is critic_check_<name>.md")
    parser.add_argument("--max-steps", type=int, default=3000, help="time limit of the checked episodes")
    parser.add_argument("--episodes", type=int, default=2)
    args = parser.parse_args()
    if args.max_steps < 1 or args.episodes < 1:
        parser.error("--max-steps and --episodes must be at least 1")
    th.set_num_threads(1)
    model = PolyGRAD.load(args.model, device="cpu")
    options = ["--env", args.env, "--name", args.name, "--max-steps", str(args.max_steps), "--episodes", str(args.episodes)]
    command = shlex.join(["python", "-m", "benchmarks.critic_check", "--model", str(args.model), *options])
    text = report(model, args.env, args.max_steps, args.episodes, command)
    (RESULTS / f"critic_check_{args.name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
