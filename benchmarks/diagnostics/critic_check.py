"""
How far a trained PolyGRAD's critic is from the returns its own policy earns: along episodes of the policy in the
simulator, the critic's value of each state against the discounted return that followed it, both in the critic's units
(rewards times ``reward_scale``).

    python -m benchmarks.diagnostics.critic_check --model path/to/model.zip --env Hopper-v4 --name hopper

Why: the actor-critic learns its values from H-step imagined windows, bootstrapped from its own target critic, so with a
long discount (``gamma=0.999``) its values reach the returns only after many updates; the policy gradient weighs a fall
by the value it loses. The episodes run past the env's usual time limit (``--max-steps``) so that the return after an
early state is nearly whole: each row's ``tail`` is the discount weight that the episode's end cut off from it (0 when
the episode terminated, and the return is then exact).

``--critic-updates N`` then says whether the critic lags its policy or learns a wrong value: it trains the critic alone
(and its target, as in training) for N more of training's actor-critic steps with the actor's rate at 0, on
trajectories imagined as in training from states of the policy's own sampled episodes, and gives the values after. A
critic that lags comes closer to the returns; one whose imagined trajectories miss the falls stays where it was. Between
two evaluations 5k env steps apart, the CPU entries take 1,250 such steps (one every ``train_freq=4`` env steps).

Writes ``benchmarks/results/diagnostics/critic_check/<name>.md``.
"""

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import update_learning_rate
from tqdm import tqdm

from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from sb3_polygrad import PolyGRAD
from sb3_polygrad.common.returns import gae

RESULTS = DIAGNOSTICS / "critic_check"

# The steps of an episode whose value and return the table gives (those the shortest episode reaches).
CHECKED_STEPS = (0, 100, 250, 500, 1000)


@dataclass
class Episode:
    """One episode of a policy: the states it was in (T, O), its rewards (T,), and whether it terminated (rather than
    hit the time limit)."""

    states: np.ndarray
    rewards: np.ndarray
    terminated: bool


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


def episode(model: PolyGRAD, env: gym.Env, deterministic: bool, seed: int) -> Episode:
    """One episode of the model's policy, the env reset with ``seed``."""
    obs, _ = env.reset(seed=seed)
    states, rewards = [], []
    while True:
        states.append(obs)
        action, _ = model.predict(obs, deterministic=deterministic)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        if terminated or truncated:
            return Episode(np.array(states, dtype=np.float32), np.array(rewards), bool(terminated))


def run_episodes(model: PolyGRAD, env_id: str, max_steps: int, deterministic: bool, n_episodes: int) -> list[Episode]:
    """
    ``n_episodes`` episodes of the model's policy (env seeds 0, 1, ...).

    :param model: a trained PolyGRAD
    :param env_id: the env it was trained on
    :param max_steps: the episodes' time limit
    :param deterministic: the policy's mean action (as evaluations act) or its samples (as imagination does)
    :param n_episodes: how many
    """
    env = gym.make(env_id, max_episode_steps=max_steps)
    episodes = [episode(model, env, deterministic, seed) for seed in range(n_episodes)]
    env.close()
    return episodes


def check(model: PolyGRAD, episodes: list[Episode]) -> CriticCheck:
    """
    The model's critic against the discounted returns of ``episodes``, averaged over them at each checked step.

    :param model: a trained PolyGRAD
    :param episodes: episodes of its policy (:func:`run_episodes`)
    """
    values, returns, tails = [], [], []
    for ep in episodes:
        with th.no_grad():
            value = model.policy.predict_values(th.as_tensor(ep.states, device=model.device)).cpu().numpy()  # (T,)
        steps = np.arange(len(ep.rewards))
        values.append(value)
        returns.append(returns_to_go(ep.rewards, model.gamma, model.actor_critic_config().reward_scale))
        tails.append(np.zeros(len(ep.rewards)) if ep.terminated else model.gamma ** (len(ep.rewards) - steps))
    lengths = [len(ep.rewards) for ep in episodes]

    def mean_at(t: int, figure: list[np.ndarray]) -> float:
        return float(np.mean([of_episode[t] for of_episode in figure]))

    rows = [(t, mean_at(t, values), mean_at(t, returns), mean_at(t, tails)) for t in CHECKED_STEPS if t < min(lengths)]
    return CriticCheck(
        float(np.mean(lengths)),
        float(np.mean([ep.rewards.mean() for ep in episodes])),
        float(np.mean([ep.terminated for ep in episodes])),
        rows,
    )


def fit_critic(model: PolyGRAD, starts: np.ndarray, updates: int, seed: int = 0) -> tuple[float, float]:
    """
    Train the model's critic alone for ``updates`` of training's imagine-then-update steps: imagination, its
    adaptation and the actor-critic step run as in ``PolyGRAD.train``, with the actor's rate at 0 (the rate the RL Zoo
    loads a model with to run it), so that only the critic and its target move, at the model's
    ``critic_learning_rate`` and ``tau``.

    :param model: a trained PolyGRAD (changed in place)
    :param starts: raw states to start imagination from, drawn uniformly with replacement, shape (N, O)
    :param updates: how many steps
    :param seed: seed of the draws and of imagination
    :return: the mean reward per step and termination rate of the imagined trajectories, as training logs them
    """
    model.learning_rate = 0.0
    model._setup_lr_schedule()
    model.set_logger(configure(None, [""]))  # the steps log as in training; nothing is written
    update_learning_rate(model.critic.optimizer, model.critic_learning_rate)
    generator = th.Generator(device=model.device).manual_seed(seed)
    states = th.as_tensor(starts, device=model.device)
    rewards, dones = [], []
    model.policy.set_training_mode(True)
    for _ in tqdm(range(updates), desc="critic updates"):
        index = th.randint(len(states), (model.imagination_batch_size,), generator=generator, device=model.device)
        trajectory = model.imagine(states[index], generator)
        model._record_imagination(trajectory)
        model._train_actor_critic(trajectory)
        rewards.append(model.logger.name_to_value["imagination/reward_mean"])
        dones.append(model.logger.name_to_value["imagination/done_rate"])
    model.policy.set_training_mode(False)
    return float(np.mean(rewards)), float(np.mean(dones))


def _table(before: CriticCheck, after: CriticCheck | None) -> list[str]:
    """The rows of one policy's table; with ``after``, its values beside the first."""
    extra = ["V after", "V after / G"] if after is not None else []
    header = ["step", "V", "G", "V / G", *extra, "tail"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for i, (t, v, g, w) in enumerate(before.rows):
        cells = [f"{t:,}", f"{v:.3g}", f"{g:.3g}", f"{v / g:.2f}"]
        if after is not None:
            v_after = after.rows[i][1]
            cells += [f"{v_after:.3g}", f"{v_after / g:.2f}"]
        lines.append("| " + " | ".join([*cells, f"{w:.2f}"]) + " |")
    return lines


def report(model: PolyGRAD, env_id: str, max_steps: int, n_episodes: int, command: str, critic_updates: int = 0) -> str:
    """
    The Markdown report of :func:`check` for the mean action and for the policy's samples, and with
    ``critic_updates`` > 0 the values after :func:`fit_critic` on the states of the sampled episodes.
    """
    policies = ((True, "mean action (as evaluated)"), (False, "sampled actions (as imagined)"))
    episodes = {
        deterministic: run_episodes(model, env_id, max_steps, deterministic, n_episodes) for deterministic, _ in policies
    }
    before = {deterministic: check(model, found) for deterministic, found in episodes.items()}
    lines = [
        f"# Critic check on {env_id}",
        "",
        f"Command: `{command}`. The critic's value V of the states of the policy's own episodes against the discounted "
        f"return G that followed them, in the critic's units (gamma {model.gamma}, reward_scale "
        f"{model.actor_critic_config().reward_scale}), "
        f"mean over {n_episodes} episodes of at most {max_steps:,} steps; tail: the discount weight the episode's end "
        "cut off from G (0 when it terminated).",
        "",
    ]
    after: dict[bool, CriticCheck | None] = dict.fromkeys(before)
    if critic_updates > 0:
        starts = np.concatenate([ep.states for ep in episodes[False]])
        reward, done = fit_critic(model, starts, critic_updates)
        after = {deterministic: check(model, found) for deterministic, found in episodes.items()}
        lines += [
            f"V after: the critic's value of the same states after {critic_updates:,} more actor-critic steps of "
            f"training with the actor held still (critic learning rate {model.critic_learning_rate:g}, tau {model.tau:g}), on "
            f"trajectories imagined from the {len(starts):,} states of the "
            f"sampled episodes; those trajectories earned {reward:.3f} reward per step and ended at {done:.2%} of "
            "their steps.",
            "",
        ]
    for deterministic, name in policies:
        found = before[deterministic]
        lines += [
            f"## Policy: {name}",
            "",
            f"Episode length {found.length:,.0f}, reward per step {found.reward_per_step:.3f}, terminated "
            f"{found.terminated:.0%}.",
            "",
            *_table(found, after[deterministic]),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a saved PolyGRAD (model.zip)")
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--name", required=True, help="the results file is critic_check/<name>.md")
    parser.add_argument("--max-steps", type=int, default=3000, help="time limit of the checked episodes")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument(
        "--critic-updates", type=int, default=0, help="then train the critic alone this many steps and check again"
    )
    parser.add_argument("--critic-learning-rate", type=float, default=None, help="for those steps (default: the model's own)")
    parser.add_argument("--tau", type=float, default=None, help="for those steps (default: the model's own)")
    args = parser.parse_args()
    if args.max_steps < 1 or args.episodes < 1 or args.critic_updates < 0:
        parser.error("--max-steps and --episodes must be at least 1, --critic-updates at least 0")
    if args.critic_learning_rate is not None and not args.critic_learning_rate > 0:
        parser.error("--critic-learning-rate must be positive")
    if args.tau is not None and not 0 < args.tau <= 1:
        parser.error("--tau must be in (0, 1]")
    th.set_num_threads(1)
    th.manual_seed(0)  # the sampled episodes' actions
    model = PolyGRAD.load(args.model, env=gym.make(args.env), device="cpu")  # imagination may need the env's rule
    options = ["--env", args.env, "--name", args.name, "--max-steps", str(args.max_steps), "--episodes", str(args.episodes)]
    if args.critic_updates:
        options += ["--critic-updates", str(args.critic_updates)]
    if args.critic_learning_rate is not None:
        options += ["--critic-learning-rate", str(args.critic_learning_rate)]
        model.critic_learning_rate = args.critic_learning_rate
    if args.tau is not None:
        options += ["--tau", str(args.tau)]
        model.tau = args.tau
    command = shlex.join(["python", "-m", "benchmarks.diagnostics.critic_check", "--model", str(args.model), *options])
    text = report(model, args.env, args.max_steps, args.episodes, command, args.critic_updates)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
