"""
Strided sampling: what fewer denoising steps cost in world-model error and save in imagination time.

One PolyGRAD world model (the MLP denoiser of the world-model study's ``quick`` preset: Hopper-v4, N = 128, tau = 0.1,
H = 11 rows) is trained once on the study's cached dataset (``benchmarks/diagnostics/world_models.py``, which makes it on first
use). Strided sampling needs no retraining, so the same weights are then sampled with K of the N steps for each K.
For each K, the guidance scale is re-tuned (fewer steps means fewer guidance steps, so the tuned g differs), and:

- the open-loop state error against the simulator at steps 1, 5 and 10 (imagined actions replayed from the recorded
  start states, as the world-model study), over several evaluation seeds (mean and spread);
- the standardised std of the imagined actions under the policy (1 = on-policy);
- the seconds per imagination at the study's size, and at the paper's configuration (MLP 1024 x 6, batch 1024, random
  weights: cost does not depend on them), with the cost per env step that implies at the paper's ratio of one
  imagination per ``train_freq`` = 4 env steps.

    OMP_NUM_THREADS=1 python -m benchmarks.diagnostics.strided_sampling      # CPU, about 10 minutes

Writes ``benchmarks/results/diagnostics/strided_sampling/Hopper-v4.{md,png}``.
"""

import argparse
import os
import sys
import time
import warnings
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from benchmarks.diagnostics.world_models import PRESETS, load_or_create_dataset, train
from benchmarks.imagination_speed import PAPER, best_time, build
from benchmarks.machine import describe_machine
from sb3_polygrad.baselines import PolyGRADWorldModel, open_loop_evaluation, time_imagination
from sb3_polygrad.world_model.sampler import standardized_action_std

RESULTS = DIAGNOSTICS / "strided_sampling"
HORIZON = 11  # rows: the start state and 10 imagined steps, so the error at h = 10 exists
REPORT_STEPS = (1, 5, 10)
IMAGINATIONS_PER_ENV_STEP = 1 / 4  # the paper's train_freq = 4 env steps, one imagination each


def evaluate(
    model: PolyGRADWorldModel,
    policy: Any,
    env: gym.Env,
    windows: Any,
    seeds: list[int],
) -> dict[str, Any]:
    """State MSE at ``REPORT_STEPS`` (one array over seeds each) and the standardised action std, mean over seeds."""
    errors, stds = [], []
    for seed in seeds:
        th.manual_seed(seed)
        errors.append(np.asarray(open_loop_evaluation(model, policy, env, windows, HORIZON)["state_mse"]))
        th.manual_seed(seed)
        stds.append(standardized_action_std(policy, model.imagine(windows.observations[:, 0], policy, HORIZON)))
    stacked = np.stack(errors)  # (seeds, H)
    return {"mse": {k: stacked[:, k] for k in REPORT_STEPS}, "action_std": float(np.mean(stds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[128, 64, 32, 16, 8], help="sampling steps K")
    parser.add_argument("--eval-trajectories", type=int, default=512)
    parser.add_argument("--eval-seeds", type=int, default=3)
    parser.add_argument("--tune-iterations", type=int, default=40, help="guidance-scale updates after changing K")
    parser.add_argument("--data-dir", help="dataset cache (default: the world-model study's quick preset)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    th.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    preset = PRESETS["quick"]
    wall_start = time.perf_counter()
    th.manual_seed(args.seed)
    np.random.seed(args.seed)

    dataset_args = argparse.Namespace(reference_dataset=None, data_dir=args.data_dir, preset="quick", seed=args.seed)
    dataset, policy = load_or_create_dataset(preset, dataset_args, th.device("cpu"))
    train_set, val_set = dataset.split(preset.validation_fraction, seed=args.seed)
    buffer, val_buffer = train_set.to_replay_buffer(th.device("cpu")), val_set.to_replay_buffer(th.device("cpu"))
    env = gym.make(preset.env_id)
    env.reset(seed=args.seed)
    obs_dim, action_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    world_model_kwargs = {**preset.diffusion, "denoiser_kwargs": preset.mlp_denoiser[HORIZON]}
    model = PolyGRADWorldModel(
        obs_dim, action_dim, HORIZON, "mlp", guidance_learning_rate=preset.guidance_learning_rate,
        world_model_kwargs=world_model_kwargs,
    )  # fmt: skip
    model.update_normalizer(*train_set.tensors(buffer.device))
    print(f"training the world model ({preset.train_steps} updates, all {preset.diffusion['n_diffusion_steps']} steps)")
    train(model, preset, buffer, policy)

    eval_windows = val_buffer.sample_windows(args.eval_trajectories, 2)
    timing_starts = buffer.sample_windows(1024, 2).observations[:, 0]
    paper_starts = th.randn(PAPER.imagination_batch, PAPER.obs_dim)
    seeds = list(range(args.eval_seeds))
    rows = []
    for steps in args.steps:
        model.world_model.set_n_sampling_steps(steps)
        for _ in range(args.tune_iterations):
            model.adapt_to_policy(buffer.sample_windows(preset.adapt_batch, 2).observations[:, 0], policy)
        result = evaluate(model, policy, env, eval_windows, seeds)
        study_seconds = time_imagination(model, policy, timing_starts, HORIZON)
        paper_model, paper_policy = build(PAPER, steps)
        paper_seconds = best_time(partial(paper_model.imagine, paper_starts, paper_policy, 0.01), 1)
        row = {"steps": steps, "g": model.guidance_scale, "study_s": study_seconds, "paper_s": paper_seconds, **result}
        print(
            f"K={steps}: h10 MSE {result['mse'][10].mean():.4g} +- {result['mse'][10].std():.2g}, "
            f"action std {result['action_std']:.3f}, g {row['g']:.4g}, {study_seconds:.3f} s, paper {paper_seconds:.2f} s",
            flush=True,
        )
        rows.append(row)
    write_outputs(rows, args, time.perf_counter() - wall_start, preset.diffusion["n_diffusion_steps"])


def write_outputs(rows: list[dict[str, Any]], args: argparse.Namespace, wall: float, n_diffusion_steps: int) -> None:
    full = max(rows, key=lambda row: row["steps"])  # the reference: the most steps measured (normally all N)
    lines = [
        "# Strided sampling: error against cost",
        "",
        f"- Command: `OMP_NUM_THREADS={th.get_num_threads()} python -m benchmarks.diagnostics.strided_sampling "
        f"{' '.join(sys.argv[1:])}`; wall-clock {wall / 60:.1f} min.",
        f"- Machine: {describe_machine()}; "
        f"{th.get_num_threads()} thread(s), eager fp32; load average {os.getloadavg()[0]:.1f} at the end (a load above "
        "the thread count slows every timing alike, so compare costs as ratios).",
        f"- One world model (Hopper-v4, MLP 256 x 3, N = {n_diffusion_steps}, tau = 0.1, {HORIZON} rows) trained once with "
        "all N steps on the world-model study's quick dataset; for each K the guidance scale is re-tuned "
        f"({args.tune_iterations} updates), then {args.eval_trajectories} held-out start states are imagined and "
        f"replayed open loop in the simulator, over {args.eval_seeds} evaluation seeds (state MSE: mean +- std over "
        "seeds, raw units).",
        "- Cost: seconds per imagination of 1024 trajectories at the study's size, and at the paper's configuration "
        "(MLP 1024 x 6, batch 1024, 10 rows, random weights); per env step at one imagination every 4 env steps.",
        "",
        "| steps K | g (tuned) | action std (standardised) | state MSE h=1 | state MSE h=5 | state MSE h=10 "
        "| h=10 error vs most steps | study model s / imagination | paper config s / imagination | paper config s / env step "
        "| cost vs most steps |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mse = row["mse"]
        cells = [
            f"{row['steps']} of {n_diffusion_steps}",
            f"{row['g']:.3g}",
            f"{row['action_std']:.3f}",
            *[f"{mse[k].mean():.4g} +- {mse[k].std():.2g}" for k in REPORT_STEPS],
            f"{mse[10].mean() / full['mse'][10].mean():.2f}x",
            f"{row['study_s']:.3f}",
            f"{row['paper_s']:.2f}",
            f"{row['paper_s'] * IMAGINATIONS_PER_ENV_STEP:.3f}",
            f"{row['paper_s'] / full['paper_s']:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "Hopper-v4.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib  # an optional dependency (the "plots" extra), so imported only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["steps"] for row in rows]
    fig, (ax_err, ax_cost) = plt.subplots(1, 2, figsize=(10, 4))
    for k in REPORT_STEPS:
        means = [row["mse"][k].mean() for row in rows]
        spreads = [row["mse"][k].std() for row in rows]
        ax_err.errorbar(steps, means, yerr=spreads, marker="o", capsize=3, label=f"h = {k}")
    ax_err.set(xscale="log", yscale="log", xlabel="sampling steps K", ylabel="open-loop state MSE")
    ax_err.set_xticks(steps, [str(s) for s in steps])
    ax_err.legend()
    # Relative cost: a ratio measured in one run holds on any machine and under any steady load; seconds do not.
    ax_cost.plot(steps, [row["paper_s"] / full["paper_s"] for row in rows], marker="o", label="paper config")
    ax_cost.plot(steps, [row["study_s"] / full["study_s"] for row in rows], marker="s", label="study model")
    ax_cost.set(xscale="log", yscale="log", xlabel="sampling steps K", ylabel=f"imagination cost vs K = {full['steps']}")
    ax_cost.legend()
    ax_cost.set_xticks(steps, [str(s) for s in steps])
    for ax in (ax_err, ax_cost):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Strided sampling (Hopper-v4, N = {n_diffusion_steps})")
    fig.tight_layout()
    fig.savefig(RESULTS / "Hopper-v4.png", dpi=120)


if __name__ == "__main__":
    main()
