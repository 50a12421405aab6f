"""
World-model comparison (the paper's world-model study, docs/method.md section 4.4): PolyGRAD with the MLP and the
transformer denoiser against autoregressive diffusion, a transformer world model and MBPO's MLP ensemble, all trained on
one fixed dataset with the same normaliser and window sampler and evaluated under the dataset's policy.

1. Dataset: an SB3 SAC agent is trained on the env and a dataset of its (Gaussian-approximated) policy's transitions
   with simulator states is collected (``sb3_polygrad.baselines.datasets``); both are cached in ``--data-dir`` (default
   ``~/.cache/sb3_polygrad/world_models_<preset>``). A dataset in the
   reference implementation's format can be used instead (``--reference-dataset`` with ``--policy``).
2. Each model trains for the same number of steps on windows from the training episodes; PolyGRAD's guidance scale is
   tuned on the way, as in the paper's world-model-only runs.
3. Each model imagines from the first states of held-out windows; its actions are replayed open loop in the simulator
   from the recorded states, giving the state MSE at each step and the first reward's error (``open_loop_errors``).
4. Compute: the seconds each model needs to imagine 1024 trajectories of ``timing_horizon`` rows, timed in rounds over
   all models in the same process.

    python -m benchmarks.diagnostics.world_models --preset quick     # CPU, about 15 minutes
    python -m benchmarks.diagnostics.world_models --preset paper     # GPU, horizons 10, 50, 200; hours

Writes ``benchmarks/results/diagnostics/world_models/<preset>.{md,csv,png}`` (``<preset>_<n>steps.*`` with
``--train-steps n``).
"""

import argparse
import csv
import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from benchmarks.machine import describe_machine
from sb3_polygrad.baselines import (
    AutoregressiveDiffusion,
    ComparisonWorldModel,
    MLPEnsemble,
    PolyGRADWorldModel,
    TransformerWorldModel,
    open_loop_evaluation,
    time_imagination,
)
from sb3_polygrad.baselines.datasets import (
    SACGaussianPolicy,
    TransitionDataset,
    collect_transitions,
    episode_returns,
    train_sac,
)
from sb3_polygrad.buffers import PolyGRADReplayBuffer
from sb3_polygrad.world_model.types import WindowSamples
from sb3_polygrad.world_model.world_model import DenoiserName

RESULTS = DIAGNOSTICS / "world_models"
REPORT_STEPS = (1, 5, 10, 50, 200)  # steps after the start at which the state error is tabulated


@dataclass(frozen=True)
class Preset:
    """
    Everything one comparison run uses. Horizons count rows (the start state and H - 1 imagined steps), so an error at
    step 10 needs 11 rows; PolyGRAD gets one model per horizon (the MLP denoiser is tied to its window length).
    """

    env_id: str
    agent_steps: int  # SAC training steps for the dataset's policy
    dataset_steps: int  # transitions collected with that policy
    horizons: tuple[int, ...]
    train_steps: int
    batch_size: int = 256
    validation_fraction: float = 0.1
    adapt_every: int = 100  # train steps between guidance-scale updates (reference: 100)
    adapt_batch: int = 256  # trajectories imagined per guidance-scale update
    guidance_learning_rate: float = 3e-2
    eval_trajectories: int = 500
    timing_trajectories: int = 1024
    timing_horizon: int = 11
    device: str = "auto"
    sac_kwargs: dict[str, Any] = field(default_factory=dict)
    diffusion: dict[str, Any] = field(default_factory=dict)  # n_diffusion_steps, noise_schedule_tau, EMA
    mlp_denoiser: dict[int, dict[str, Any]] = field(default_factory=dict)  # per horizon
    transformer_denoiser: dict[str, Any] = field(default_factory=dict)
    ar_denoiser: dict[str, Any] = field(default_factory=dict)
    transformer_world_model: dict[str, Any] = field(default_factory=dict)
    ensemble: dict[str, Any] = field(default_factory=dict)


PRESETS = {
    # CPU minutes: small networks, a briefly trained SAC agent on Hopper, 10 imagined steps.
    "quick": Preset(
        env_id="Hopper-v4",
        agent_steps=15_000,
        dataset_steps=30_000,
        horizons=(11,),
        train_steps=3_000,
        adapt_every=50,
        adapt_batch=64,
        guidance_learning_rate=0.2,
        eval_trajectories=256,
        device="cpu",
        sac_kwargs={"learning_starts": 1_000, "policy_kwargs": {"net_arch": [128, 128]}},
        diffusion={"n_diffusion_steps": 128, "noise_schedule_tau": 0.1},
        mlp_denoiser={11: {"hidden_dim": 256, "num_layers": 3}},
        transformer_denoiser={"d_model": 64, "n_layers": 2, "n_heads": 4},
        ar_denoiser={"hidden_dim": 256, "num_layers": 3},
        transformer_world_model={"context_length": 10, "d_model": 64, "n_layers": 2, "n_heads": 4, "learning_rate": 3e-4},
        ensemble={"hidden_dims": (200, 200, 200, 200)},
    ),
    # The paper's networks and horizons 10, 50, 200 (10x fewer updates than its 1e6); a GPU job of several hours.
    "paper": Preset(
        env_id="Hopper-v4",
        agent_steps=300_000,
        dataset_steps=1_000_000,
        horizons=(11, 51, 201),
        train_steps=100_000,
        sac_kwargs={"learning_starts": 5_000},
        diffusion={"n_diffusion_steps": 128, "noise_schedule_tau": 0.1},
        mlp_denoiser={11: {"hidden_dim": 1024}, 51: {"hidden_dim": 2048}, 201: {"hidden_dim": 2048}},
        ar_denoiser={"hidden_dim": 1024},
    ),
    # Seconds: checks the pipeline end to end; its numbers mean nothing.
    "smoke": Preset(
        env_id="Hopper-v4",
        agent_steps=300,
        dataset_steps=3_000,
        horizons=(6,),
        train_steps=30,
        batch_size=32,
        adapt_every=10,
        adapt_batch=16,
        eval_trajectories=16,
        timing_trajectories=64,
        timing_horizon=6,
        device="cpu",
        sac_kwargs={"learning_starts": 100, "policy_kwargs": {"net_arch": [32, 32]}},
        diffusion={"n_diffusion_steps": 8},
        mlp_denoiser={6: {"hidden_dim": 32, "num_layers": 1}},
        transformer_denoiser={"d_model": 16, "n_layers": 1, "n_heads": 2},
        ar_denoiser={"hidden_dim": 32, "num_layers": 1},
        transformer_world_model={"context_length": 4, "d_model": 16, "n_layers": 1, "n_heads": 2},
        ensemble={"hidden_dims": (32, 32)},
    ),
}


def build_models(preset: Preset, obs_dim: int, action_dim: int, study: str | None = None) -> dict[str, ComparisonWorldModel]:
    """One instance of every world model of the comparison, by display name; with ``study="attention"``, only the
    PolyGRAD transformer denoiser with causal and with bidirectional attention (the measurement behind its default);
    with ``study="causal"``, only PolyGRAD's residual MLP and its causally masked variant, same sizes."""
    models: dict[str, ComparisonWorldModel] = {}
    guidance_lr = preset.guidance_learning_rate
    if study == "causal":
        for h in preset.horizons:
            mlp_kwargs = {**preset.diffusion, "denoiser_kwargs": preset.mlp_denoiser.get(h, {})}
            variants: list[tuple[DenoiserName, str]] = [("mlp", "MLP"), ("causal_mlp", "causal MLP")]
            for denoiser, label in variants:
                models[f"PolyGRAD-{label} (H={h})"] = PolyGRADWorldModel(
                    obs_dim, action_dim, h, denoiser, guidance_learning_rate=guidance_lr, world_model_kwargs=mlp_kwargs
                )
        return models
    if study == "attention":
        for h in preset.horizons:
            for causal, label in [(True, "causal"), (False, "bidirectional")]:
                tf_kwargs = {**preset.diffusion, "noise_schedule_tau": 1.0,
                             "denoiser_kwargs": {**preset.transformer_denoiser, "causal": causal}}  # fmt: skip
                models[f"PolyGRAD-Transformer {label} (H={h})"] = PolyGRADWorldModel(
                    obs_dim, action_dim, h, "transformer", guidance_learning_rate=guidance_lr, world_model_kwargs=tf_kwargs
                )
        return models
    for h in preset.horizons:
        mlp_kwargs = {**preset.diffusion, "denoiser_kwargs": preset.mlp_denoiser.get(h, {})}
        models[f"PolyGRAD-MLP (H={h})"] = PolyGRADWorldModel(
            obs_dim, action_dim, h, "mlp", guidance_learning_rate=guidance_lr, world_model_kwargs=mlp_kwargs
        )
    for h in preset.horizons:
        # The paper's transformer runs use tau = 1 on every env (section 4.4).
        tf_kwargs = {**preset.diffusion, "noise_schedule_tau": 1.0, "denoiser_kwargs": preset.transformer_denoiser}
        models[f"PolyGRAD-Transformer (H={h})"] = PolyGRADWorldModel(
            obs_dim, action_dim, h, "transformer", guidance_learning_rate=guidance_lr, world_model_kwargs=tf_kwargs
        )
    ar_kwargs = {**preset.diffusion, "denoiser_kwargs": preset.ar_denoiser}
    models["Autoregressive diffusion"] = AutoregressiveDiffusion(obs_dim, action_dim, world_model_kwargs=ar_kwargs)
    models["Transformer world model"] = TransformerWorldModel(obs_dim, action_dim, **preset.transformer_world_model)
    models["MLP ensemble (MBPO)"] = MLPEnsemble(obs_dim, action_dim, **preset.ensemble)
    return models


def load_or_create_dataset(
    preset: Preset, args: argparse.Namespace, device: th.device
) -> tuple[TransitionDataset, SACGaussianPolicy]:
    """The cached dataset and policy of the preset, made on first use; or a reference dataset with a given policy."""
    if args.reference_dataset is not None:
        if args.policy is None:
            raise SystemExit("--reference-dataset needs --policy (an SB3 SAC .zip of the policy to imagine with)")
        dataset = TransitionDataset.from_reference(args.reference_dataset, env_id=args.env_id or preset.env_id)
        return dataset, SACGaussianPolicy.load(args.policy, device=device)
    data_dir = Path(args.data_dir or Path.home() / ".cache" / "sb3_polygrad" / f"world_models_{args.preset}")
    if not (data_dir / "metadata.json").exists():
        print(f"training SAC on {preset.env_id} for {preset.agent_steps} steps", flush=True)
        agent = train_sac(preset.env_id, preset.agent_steps, args.seed, preset.sac_kwargs, device=device.type)
        policy = SACGaussianPolicy(agent)
        dataset = collect_transitions(preset.env_id, policy, preset.dataset_steps, seed=args.seed)
        dataset.metadata.update(source=f"a SAC agent trained for {preset.agent_steps} steps", policy_file="policy.zip")
        dataset.save(data_dir)
        policy.save(data_dir / "policy.zip")
    dataset = TransitionDataset.load(data_dir)
    return dataset, SACGaussianPolicy.load(data_dir / "policy.zip", dataset.metadata["policy_min_std"], device=device)


def train(
    model: ComparisonWorldModel, preset: Preset, buffer: PolyGRADReplayBuffer, policy: SACGaussianPolicy
) -> dict[str, float]:
    """Train one model for the preset's steps, tuning whatever it tunes to the policy every ``adapt_every`` steps."""
    start, info, adapted = time.perf_counter(), {}, {}
    for step in range(1, preset.train_steps + 1):
        info = model.train_step(buffer.sample_windows(preset.batch_size, model.train_horizon))
        if step % preset.adapt_every == 0:
            adapted = model.adapt_to_policy(buffer.sample_windows(preset.adapt_batch, 2).observations[:, 0], policy)
        if step % max(1, preset.train_steps // 5) == 0:
            print(f"  step {step}: {info | adapted}", flush=True)
    return {"train_seconds": time.perf_counter() - start, **info, **adapted}


def window_error(windows: WindowSamples, predicted: th.Tensor) -> np.ndarray:
    """State MSE of predicted states (n, H, O) against real windows, per step, steps after a termination left out; (H,)."""
    sq = (predicted - windows.observations).square().mean(dim=-1)  # (n, H)
    alive = th.cat([th.ones_like(windows.terminals[:, :1]), 1.0 - windows.terminals[:, :-1]], dim=1)  # (n, H)
    return ((sq * alive).sum(0) / alive.sum(0).clamp(min=1)).cpu().numpy()


def no_change_error(buffer: PolyGRADReplayBuffer, horizon: int, n: int) -> np.ndarray:
    """A reference line: the state MSE of predicting ``s_k = s_0`` on real held-out windows, shape (H,)."""
    windows = buffer.sample_windows(n, horizon)
    return window_error(windows, windows.observations[:, :1].expand_as(windows.observations))


def unguided_error(model: PolyGRADWorldModel, buffer: PolyGRADReplayBuffer, n: int) -> np.ndarray:
    """A diagnostic that separates the denoiser's error from the guidance's: PolyGRAD sampled with the real actions of
    held-out windows (plain DDPM, no guidance) against those windows' states, shape (H,)."""
    windows = buffer.sample_windows(n, model.train_horizon)
    trajectory = model.world_model.sample_with_actions(windows.observations[:, 0], windows.actions)
    return window_error(windows, trajectory.observations)


def machine() -> str:
    """The machine, the GPU if any, and the threads torch uses."""
    gpu = f", GPU {th.cuda.get_device_name()}" if th.cuda.is_available() else ""
    return f"{describe_machine()}{gpu}; {th.get_num_threads()} thread(s)"


def comparison_statement(rows: list[dict[str, Any]]) -> str:
    """PolyGRAD-MLP against autoregressive diffusion, in ratios computed from the table."""
    by_name = {row["model"]: row for row in rows}
    ar = by_name.get("Autoregressive diffusion")
    if ar is None:  # the studies have no autoregressive model to compare with
        return ""
    lines = []
    for row in rows:
        if not row["model"].startswith("PolyGRAD"):
            continue
        ratios = [
            f"{row[f'mse_{k}'] / ar[f'mse_{k}']:.2f}x at step {k}"
            for k in REPORT_STEPS
            if f"mse_{k}" in row and f"mse_{k}" in ar
        ]
        cost = f"{row['imagine_seconds'] / ar['imagine_seconds']:.2f}x" if "imagine_seconds" in row else "n/a"
        lines.append(
            f"- {row['model']}: state MSE {', '.join(ratios)}, first-step reward MSE "
            f"{row['reward_mse'] / ar['reward_mse']:.2f}x, imagination time {cost} that of autoregressive diffusion."
        )
    return "\n".join(lines)


def diagnostic_table(rows: list[dict[str, Any]], steps: list[int]) -> list[str]:
    """PolyGRAD's guided error next to its error when sampled with the real actions (``unguided_error``)."""
    lines = [
        "Diagnostic: PolyGRAD guided by the policy (the table above) against the same model sampled with the real actions "
        "of held-out windows, no guidance (state MSE against those windows):",
        "",
        "| model | " + " | ".join(f"guided k={k} | real actions k={k}" for k in steps) + " |",
        "|" + "---|" * (1 + 2 * len(steps)),
    ]
    for row in rows:
        if "unguided_mse_1" in row:
            cells = [
                f"{row.get(f'mse_{k}', float('nan')):.3g} | {row.get(f'unguided_mse_{k}', float('nan')):.3g}" for k in steps
            ]
            lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return lines


def write_outputs(name: str, rows: list[dict[str, Any]], curves: dict[str, np.ndarray], header: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    steps = [k for k in REPORT_STEPS if any(f"mse_{k}" in row for row in rows)]
    columns = ["model", "rows H", "parameters", "train (s)", *[f"state MSE k={k}" for k in steps], "reward MSE k=0"]
    columns.append(f"imagine {rows[0]['timing_trajectories']} x {rows[0]['timing_horizon']} rows (s)")
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row["model"], str(row["rows"]), f"{row['parameters'] / 1e6:.2f}M", f"{row['train_seconds']:.0f}"]
        cells += [f"{row[f'mse_{k}']:.3g}" if f"mse_{k}" in row else "-" for k in steps]
        cells += [f"{row['reward_mse']:.3g}", f"{row['imagine_seconds']:.3g}" if "imagine_seconds" in row else "-"]
        table.append("| " + " | ".join(cells) + " |")
    reference = curves["No-change reference (s_k = s_0)"]
    table.append("| No-change reference (s_k = s_0, real windows) | - | - | - | " + " | ".join(
        f"{reference[k]:.3g}" if k < len(reference) else "-" for k in steps
    ) + " | - | - |")  # fmt: skip
    text = [*header, "", *table, ""]
    statement = comparison_statement(rows)
    if statement:
        text += ["PolyGRAD against autoregressive diffusion (ratios of the numbers above):", "", statement, ""]
    text += diagnostic_table(rows, steps)
    (RESULTS / f"{name}.md").write_text("\n".join([*text, ""]))

    with (RESULTS / f"{name}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "step", "state_mse"])
        for model, curve in curves.items():
            writer.writerows([model, k, f"{v:.6g}"] for k, v in enumerate(curve) if k > 0)

    import matplotlib  # an optional dependency (the "plots" extra), so imported only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for model, curve in curves.items():
        style: dict[str, Any] = {"color": "gray", "linestyle": ":"} if model.startswith("No-change") else {"marker": "."}
        ax.plot(np.arange(1, len(curve)), curve[1:], label=model, **style)
    ax.set_yscale("log")
    if max(len(c) for c in curves.values()) > 30:
        ax.set_xscale("log")
    ax.set_xlabel("open-loop step k")
    ax.set_ylabel("state MSE vs simulator (raw units)")
    ax.set_title(f"world models {name}".replace("_", " "))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)


def train_and_evaluate(
    preset: Preset,
    models: dict[str, ComparisonWorldModel],
    data: tuple[TransitionDataset, PolyGRADReplayBuffer, PolyGRADReplayBuffer],
    policy: SACGaussianPolicy,
    env: gym.Env,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Train each model in turn and evaluate it open loop on the same held-out start states; one table row each."""
    train_set, buffer, val_buffer = data
    eval_windows = val_buffer.sample_windows(preset.eval_trajectories, 2)
    rows, curves = [], {}
    for name, model in models.items():
        n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)  # not the EMA copies
        print(f"{name}: {n_parameters / 1e6:.2f}M parameters", flush=True)
        model.update_normalizer(*train_set.tensors(buffer.device))
        stats = train(model, preset, buffer, policy)
        if isinstance(model, MLPEnsemble):
            model.select_elites(val_buffer.sample_windows(4096, 2))
        horizon = model.train_horizon if isinstance(model, PolyGRADWorldModel) else max(preset.horizons)
        th.manual_seed(seed)
        errors = open_loop_evaluation(model, policy, env, eval_windows, horizon)
        state_mse = np.asarray(errors["state_mse"])
        row = {"model": name, "rows": horizon, "parameters": n_parameters, **stats}
        row |= {f"mse_{k}": float(state_mse[k]) for k in REPORT_STEPS if k < horizon}
        row |= {"reward_mse": errors["reward_mse"], "timing_horizon": preset.timing_horizon}
        row["timing_trajectories"] = preset.timing_trajectories
        if isinstance(model, PolyGRADWorldModel):
            unguided = unguided_error(model, val_buffer, preset.eval_trajectories)
            row |= {f"unguided_mse_{k}": float(unguided[k]) for k in REPORT_STEPS if k < horizon}
        print(f"  {row}", flush=True)
        rows.append(row)
        curves[name] = state_mse
    return rows, curves


def time_models(
    preset: Preset,
    models: dict[str, ComparisonWorldModel],
    rows: list[dict[str, Any]],
    starts: th.Tensor,
    policy: SACGaussianPolicy,
) -> None:
    """Seconds per imagination of each model, fastest of 2 rounds; the rounds go over all models in turn, so a change
    in the machine's load touches every model alike."""
    timed = [(row, model) for row, model in zip(rows, models.values(), strict=True)]
    timed = [(row, model) for row, model in timed if model.supports_horizon(preset.timing_horizon)]
    for _ in range(2):
        for row, model in timed:
            seconds = time_imagination(model, policy, starts, preset.timing_horizon, repeats=1)
            row["imagine_seconds"] = min(seconds, row.get("imagine_seconds", float("inf")))
    print({row["model"]: row["imagine_seconds"] for row, _ in timed}, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--data-dir", help="dataset cache (default ~/.cache/sb3_polygrad/world_models_<preset>)")
    parser.add_argument("--reference-dataset", help="a dataset in the reference implementation's .npy format")
    parser.add_argument("--policy", help="SB3 SAC .zip of the policy to imagine with (with --reference-dataset)")
    parser.add_argument("--env-id", help="env of the reference dataset (default: the preset's)")
    parser.add_argument("--device", help="torch device (default: the preset's)")
    parser.add_argument("--train-steps", type=int, help="updates per model (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    studies = parser.add_mutually_exclusive_group()
    studies.add_argument(
        "--attention-study", action="store_true", help="only the transformer denoiser, causal against bidirectional"
    )
    studies.add_argument(
        "--causal-study", action="store_true", help="only the residual MLP denoiser, unmasked against causally masked"
    )
    args = parser.parse_args()
    study = "attention" if args.attention_study else "causal" if args.causal_study else None
    preset = PRESETS[args.preset]
    if args.train_steps is not None:
        preset = replace(preset, train_steps=args.train_steps)
    th.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    device_name = args.device or preset.device
    device = th.device(("cuda" if th.cuda.is_available() else "cpu") if device_name == "auto" else device_name)
    wall_start = time.perf_counter()
    th.manual_seed(args.seed)
    np.random.seed(args.seed)

    dataset, policy = load_or_create_dataset(preset, args, device)
    env_id = dataset.metadata.get("env_id") or preset.env_id
    train_set, val_set = dataset.split(preset.validation_fraction, seed=args.seed)
    buffer, val_buffer = train_set.to_replay_buffer(device), val_set.to_replay_buffer(device)
    env = gym.make(env_id)
    env.reset(seed=args.seed)
    obs_dim, action_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    models = {name: model.to(device) for name, model in build_models(preset, obs_dim, action_dim, study).items()}
    rows, curves = train_and_evaluate(preset, models, (train_set, buffer, val_buffer), policy, env, args.seed)
    curves["No-change reference (s_k = s_0)"] = no_change_error(val_buffer, max(preset.horizons), preset.eval_trajectories)
    time_models(preset, models, rows, buffer.sample_windows(preset.timing_trajectories, 2).observations[:, 0], policy)

    wall = time.perf_counter() - wall_start
    returns = episode_returns(dataset)
    command = "OMP_NUM_THREADS=1 python -m benchmarks.diagnostics.world_models " + " ".join(sys.argv[1:])
    header = [
        f"# World models on a fixed dataset: preset `{args.preset}`",
        "",
        f"- Command: `{command}`; wall-clock {wall / 60:.1f} min (dataset creation included when not cached).",
        f"- Machine: {machine()}; device {device}.",
        f"- Dataset: {env_id}, {len(dataset)} transitions in {len(returns)} episodes (mean return {returns.mean():.0f}) "
        f"from {dataset.metadata.get('source')}; {len(val_set.episode_ends)} episodes held out for evaluation.",
        f"- Each model: {preset.train_steps} updates, batch {preset.batch_size} (train time includes PolyGRAD's "
        f"guidance-scale tuning, one imagination of {preset.adapt_batch} trajectories every {preset.adapt_every} "
        f"updates); evaluated on {preset.eval_trajectories} held-out start states, imagined actions replayed open loop "
        "in the simulator (state MSE averaged over state dimensions, raw units; steps after the true episode terminates "
        "are left out).",
        f"- Imagination time: one call on {preset.timing_trajectories} start states, {preset.timing_horizon} rows "
        f"({preset.timing_horizon - 1} imagined steps), fastest of 2 rounds over all models, in this one run.",
    ]
    name = args.preset + ("" if args.train_steps is None else f"_{args.train_steps}steps")
    name += f"_{study}" if study else ""
    write_outputs(name, rows, curves, header)
    print(f"done in {wall / 60:.1f} min: {RESULTS}/{name}.md", flush=True)


if __name__ == "__main__":
    main()
