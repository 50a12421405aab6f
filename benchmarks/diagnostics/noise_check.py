"""
How a trained PolyGRAD's return depends on its action noise: episodes in the simulator in which the policy acts
``mean + scale * std * noise`` for scales from 0 (the mean action, as evaluations act) to 1 (its samples, as the
actor-critic learns them), and with the expected value of the action the env takes, ``E[clip(mean + std * noise)]``.

    python -m benchmarks.diagnostics.noise_check --model path/to/model.zip --env Hopper-v4 --name hopper

Why: the actor-critic optimises the return of its samples, and the policy's mean action can earn far less. The scales
in between say whether the gait needs all of its noise or breaks only without it; the expected clipped action says
whether the gap is the bias of clipping (samples past a bound are clipped to it, so the action the env takes on average
is not the mean).

Writes ``benchmarks/results/diagnostics/noise_check/<name>.md``.
"""

import argparse
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th

from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from sb3_polygrad import PolyGRAD

RESULTS = DIAGNOSTICS / "noise_check"

NOISE_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)

# Maps the policy's mean and std (scaled units) and a random generator to the action it takes, before clipping.
ActionRule = Callable[[th.Tensor, th.Tensor, th.Generator], th.Tensor]


def expected_clipped_action(mean: th.Tensor, std: th.Tensor) -> th.Tensor:
    """
    ``E[clip(a, -1, 1)]`` for ``a ~ N(mean, std^2)``, per dimension: the action the env takes on average.

    :param mean: the Gaussian's mean, any shape
    :param std: its standard deviation, the same shape
    :return: the expected clipped action, the same shape
    """
    normal = th.distributions.Normal(th.zeros_like(mean), th.ones_like(std))
    low, high = (-1.0 - mean) / std, (1.0 - mean) / std
    p_low, p_high = normal.cdf(low), normal.cdf(high)
    # The mean of the Gaussian truncated to [-1, 1] times its mass, then each bound times the mass clipped to it.
    inside = mean * (p_high - p_low) - std * (normal.log_prob(high).exp() - normal.log_prob(low).exp())
    return inside + (1.0 - p_high) - p_low


def noisy(scale: float) -> ActionRule:
    """:param scale: factor on the policy's std (0: the mean action)
    :return: the rule ``mean + scale * std * noise``"""
    return lambda mean, std, generator: mean + scale * std * th.randn(mean.shape, generator=generator)


def episode_return(model: PolyGRAD, env: gym.Env, rule: ActionRule, seed: int) -> tuple[float, int]:
    """
    One episode in which the policy acts by ``rule``, clipped to the action bounds as the env clips it.

    :param seed: seed of the env's reset and of the action noise
    :return: the episode's return and length
    """
    obs, _ = env.reset(seed=seed)
    generator = th.Generator().manual_seed(seed)
    total, length = 0.0, 0
    while True:
        with th.no_grad():
            mean, std = model.actor.action_distribution_params(th.as_tensor(obs, dtype=th.float32)[None])
            scaled = rule(mean, std, generator)[0].clamp(-1.0, 1.0).numpy()
        obs, reward, terminated, truncated, _ = env.step(model.policy.unscale_action(scaled))
        total, length = total + float(reward), length + 1
        if terminated or truncated:
            return total, length


def report(model: PolyGRAD, env_id: str, scales: Sequence[float], n_episodes: int, command: str) -> str:
    """The Markdown table of the mean return and length of ``n_episodes`` episodes (seeds 0, 1, ...) per rule."""
    env = gym.make(env_id)
    rules = [(f"mean + {s:g} std noise" if s else "mean action (as evaluated)", noisy(s)) for s in scales]
    rules.append(("expected clipped action", lambda mean, std, _: expected_clipped_action(mean, std)))
    lines = [
        f"# Noise check on {env_id}",
        "",
        f"Command: `{command}`. Mean over {n_episodes} episodes (seeds 0 to {n_episodes - 1}) of the policy acting "
        f"by each rule; the policy's action std is {model.actor.std().mean().item():.3f} (mean over action dimensions).",
        "",
        "| actions | return | episode length |",
        "|---|---:|---:|",
    ]
    for name, rule in rules:
        episodes = np.array([episode_return(model, env, rule, seed) for seed in range(n_episodes)])
        lines.append(f"| {name} | {episodes[:, 0].mean():.0f} | {episodes[:, 1].mean():.0f} |")
    env.close()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a saved PolyGRAD (model.zip)")
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--name", required=True, help="the results file is noise_check/<name>.md")
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    th.set_num_threads(1)
    model = PolyGRAD.load(args.model, device="cpu")
    options = ["--env", args.env, "--name", args.name, "--episodes", str(args.episodes)]
    command = shlex.join(["python", "-m", "benchmarks.diagnostics.noise_check", "--model", str(args.model), *options])
    text = report(model, args.env, NOISE_SCALES, args.episodes, command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
