"""
A CPU-sized PolyGRAD run that learns in minutes: the README's first command.

Trains PolyGRAD with the shipped CPU configuration (``hyperparams/polygrad.yml``, the same entry the RL Zoo uses),
evaluates the deterministic policy every ``--eval-freq`` env steps, and writes the model, the evaluations and a
learning-curve PNG to ``--output``.

    python -m sb3_polygrad.quickstart --env InvertedPendulum-v4 --seed 0
"""

import argparse
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.monitor import Monitor

from sb3_polygrad import PolyGRAD

HYPERPARAMS = Path(__file__).parent / "zoo" / "polygrad.yml"


def cpu_config(env_id: str) -> tuple[int, dict[str, Any]]:
    """
    The zoo entry of ``env_id`` as PolyGRAD keyword arguments.

    :param env_id: a key of ``hyperparams/polygrad.yml``
    :return: the env-step budget and the constructor's keyword arguments
    """
    entries = yaml.safe_load(HYPERPARAMS.read_text())
    if env_id not in entries:
        raise ValueError(f"{env_id} has no entry in {HYPERPARAMS}; choose one of {sorted(entries)}")
    kwargs = dict(entries[env_id])
    return int(kwargs.pop("n_timesteps")), kwargs


def plot_learning_curve(evaluations: Path, output: Path, title: str) -> None:
    """Plot the mean (and spread over episodes) of the evaluation returns written by ``EvalCallback``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.load(evaluations)
    steps, returns = data["timesteps"], data["results"]  # (n_evals,), (n_evals, n_episodes)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, returns.mean(axis=1), marker="o", label="mean over episodes")
    ax.fill_between(steps, returns.min(axis=1), returns.max(axis=1), alpha=0.25, label="min-max over episodes")
    ax.set(xlabel="env steps", ylabel="deterministic eval return", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="InvertedPendulum-v4", help="an env with an entry in hyperparams/polygrad.yml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, help="env-step budget (default: the entry's n_timesteps)")
    parser.add_argument("--eval-freq", type=int, default=2000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path, default=Path("quickstart_output"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    th.set_num_threads(1)  # small networks: one thread is fastest, and leaves a core to the simulator

    budget, kwargs = cpu_config(args.env)
    budget = args.timesteps or budget
    args.output.mkdir(parents=True, exist_ok=True)
    model = PolyGRAD(env=args.env, seed=args.seed, device=args.device, tensorboard_log=str(args.output / "tb"), **kwargs)
    print(
        f"PolyGRAD on {args.env} for {budget} env steps, seed {args.seed}, device {model.device}, "
        f"imagination {model.imagination!r}"
    )
    eval_env = Monitor(gym.make(args.env))
    eval_env.reset(seed=args.seed + 1000)
    evaluation = EvalCallback(
        eval_env, eval_freq=args.eval_freq, n_eval_episodes=args.eval_episodes, log_path=str(args.output), verbose=1
    )
    model.learn(budget, callback=evaluation, progress_bar=True)
    model.save(args.output / "polygrad_model.zip")

    plot_learning_curve(args.output / "evaluations.npz", args.output / "learning_curve.png", f"PolyGRAD on {args.env}")
    data = np.load(args.output / "evaluations.npz")
    means = data["results"].mean(axis=1)
    print("\nenv steps  eval return (mean of the deterministic policy)")
    for steps, mean in zip(data["timesteps"], means, strict=True):
        print(f"{steps:9d}  {mean:9.1f}")
    print(f"\nbest {means.max():.1f}, first evaluation {means[0]:.1f}; learning curve: {args.output / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
