"""
How fast PolyGRAD imagines and trains, as a fraction of what this machine's matrix units can do.

Measures, in one run: the machine's fp32 matmul throughput (a large square matmul), imagined transitions per second
of the guided sampler and denoiser training steps per second, for the paper's configuration (Hopper sizes, H = 10,
N = 128, batch 1024, residual MLP 1024 x 6, policy 256 x 256) and for the shipped CPU configuration
(InvertedPendulum sizes, the CPU entry of ``hyperparams/polygrad.yml``), and the imagination cost of strided sampling
(fewer denoising steps). Networks are freshly initialised: speed does not depend on the weights.

    python -m benchmarks.imagination_speed --threads 2

Writes ``benchmarks/results/imagination_speed.md``.
"""

import argparse
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch as th
from gymnasium import spaces
from torch import nn

from sb3_polygrad.polygrad.policies import PolyGRADPolicy
from sb3_polygrad.world_model.types import WindowSamples
from sb3_polygrad.world_model.world_model import DiffusionWorldModel

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class SpeedConfig:
    """Sizes of one measured configuration."""

    name: str
    obs_dim: int
    action_dim: int
    horizon: int
    n_diffusion_steps: int
    n_sampling_steps: int
    imagination_batch: int
    hidden_dim: int
    num_layers: int
    policy_arch: tuple[int, ...]
    train_batch: int = 256


PAPER = SpeedConfig("paper (Hopper, MLP 1024x6, N=128, batch 1024)", 11, 3, 10, 128, 128, 1024, 1024, 6, (256, 256))
CPU = SpeedConfig(
    "shipped CPU (InvertedPendulum, MLP 256x3, 16 of 32 steps, batch 256)", 4, 1, 10, 32, 16, 256, 256, 3, (64, 64)
)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` calls after one warm-up call, in seconds."""
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def matmul_gflops(size: int = 2048) -> float:
    """fp32 matmul throughput of this machine, the limit the denoiser's linear layers are compared with."""
    a, b = th.randn(size, size), th.randn(size, size)
    seconds = best_time(lambda: a @ b, 5)
    return 2 * size**3 / seconds / 1e9


def linear_flops(module: nn.Module, rows: int) -> float:
    """Multiply-add FLOPs of every ``nn.Linear`` in ``module`` applied to ``rows`` inputs (2 per weight per row)."""
    return sum(2.0 * m.weight.numel() * rows for m in module.modules() if isinstance(m, nn.Linear))


def build(config: SpeedConfig, n_sampling_steps: int | None = None) -> tuple[DiffusionWorldModel, PolyGRADPolicy]:
    model = DiffusionWorldModel(
        config.obs_dim, config.action_dim, config.horizon, n_diffusion_steps=config.n_diffusion_steps,
        n_sampling_steps=n_sampling_steps or config.n_sampling_steps,
        denoiser_kwargs=dict(hidden_dim=config.hidden_dim, num_layers=config.num_layers),
    )  # fmt: skip
    policy = PolyGRADPolicy(
        spaces.Box(-10, 10, (config.obs_dim,)), spaces.Box(-1, 1, (config.action_dim,)), lambda _: 3e-4,
        net_arch=list(config.policy_arch),
    )  # fmt: skip
    return model, policy


def measure(config: SpeedConfig, peak: float, repeats: int) -> list[str]:
    model, policy = build(config)
    obs0 = th.randn(config.imagination_batch, config.obs_dim)
    seconds = best_time(lambda: model.imagine(obs0, policy, 0.01), repeats)
    transitions = config.imagination_batch * (config.horizon - 1)
    steps = config.n_sampling_steps
    denoiser_flops = steps * linear_flops(model.denoiser, config.imagination_batch)
    policy_flops = steps * linear_flops(policy.actor, config.imagination_batch * config.horizon)

    batch = WindowSamples(
        th.randn(config.train_batch, config.horizon, config.obs_dim),
        th.randn(config.train_batch, config.horizon, config.action_dim),
        th.randn(config.train_batch, config.horizon),
        th.zeros(config.train_batch, config.horizon),
    )
    optimizer = th.optim.Adam(model.denoiser.parameters(), lr=3e-4)

    def train_step() -> None:
        loss, _ = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    train_seconds = best_time(train_step, repeats)
    train_flops = 3 * linear_flops(model.denoiser, config.train_batch)  # forward + two backward matmuls
    return [
        f"| {config.name} | {transitions / seconds:,.0f} | {seconds:.3f} | "
        f"{denoiser_flops / seconds / 1e9:.1f} ({100 * denoiser_flops / seconds / 1e9 / peak:.0f}%) | "
        f"{100 * denoiser_flops / (denoiser_flops + policy_flops):.0f}% | {1 / train_seconds:,.1f} | "
        f"{train_flops / train_seconds / 1e9:.1f} ({100 * train_flops / train_seconds / 1e9 / peak:.0f}%) |"
    ]


def strided(config: SpeedConfig, counts: list[int], repeats: int) -> list[str]:
    rows = []
    obs0 = th.randn(config.imagination_batch, config.obs_dim)
    for count in counts:
        model, policy = build(config, count)
        seconds = best_time(lambda model=model, policy=policy: model.imagine(obs0, policy, 0.01), repeats)
        rows.append(f"| {config.name} | {count} of {config.n_diffusion_steps} | {seconds:.3f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=th.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    th.manual_seed(0)
    peak = matmul_gflops()
    lines = [
        "# Imagination and training speed",
        "",
        f"Command: `python -m benchmarks.imagination_speed --threads {args.threads}`. "
        f"Machine: {platform.processor() or platform.machine()}, torch {th.__version__}, {args.threads} thread(s), "
        f"eager fp32, CPU. Fastest of {args.repeats} calls after a warm-up.",
        "",
        f"Measured fp32 matmul throughput (2048 x 2048): **{peak:.1f} GFLOP/s**; shares below are of this figure.",
        "",
        "| configuration | imagined transitions / s | s per imagination | denoiser GFLOP/s in imagination (share of matmul) "
        "| denoiser share of imagination FLOPs | denoiser train steps / s | train GFLOP/s (share) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for config in (CPU, PAPER):
        lines += measure(config, peak, args.repeats)
    lines += [
        "",
        "Strided sampling: cost of one imagination against the number of denoising steps (its effect on world-model error"
        " is not measured here).",
        "",
        "| configuration | sampling steps | s per imagination |",
        "|---|---|---:|",
        *strided(CPU, [32, 16, 8], args.repeats),
        *strided(PAPER, [128, 32, 16, 8], 1),
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "imagination_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
