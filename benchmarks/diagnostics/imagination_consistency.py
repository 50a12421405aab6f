"""
How consistent each imagination method is with the world model's dynamics and with the policy, and what it costs.

Trains PolyGRAD with an env's zoo entry (plus ``--set key=value`` overrides) for ``--steps`` env steps, or loads a saved
model (``--load``), then imagines from the same recorded start states with every method the trained world model can
run: the paper's guided sampler (its guidance scale first tuned on this model, as training would), closed-loop
imagination at several row lags, and sequential sampling. For each it replays the imagined actions open loop in MuJoCo
from the recorded simulator states and reports the state error at k = 1 and k = H - 1, the standardised std and bias of
the imagined actions under the policy at the imagined states, and seconds per imagination of the training batch. The
control is the same world model given the actions of the policy's own closed-loop rollouts in the simulator: how
accurate the world model is when every action fits the state it is taken in.

    python -m benchmarks.diagnostics.imagination_consistency --env InvertedPendulum-v4 --steps 12000 \
        --set imagination=closed_loop denoiser=causal_mlp

Writes ``benchmarks/results/diagnostics/imagination_consistency/<env><name>.md``.
"""

import argparse
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
import yaml

from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from benchmarks.diagnostics.imagination_fidelity import measurement_starts, replay, write
from benchmarks.presets import zoo_hyperparams
from sb3_polygrad import PolyGRAD
from sb3_polygrad.common.simulator import simulator_rollouts
from sb3_polygrad.imagination import (
    ClosedLoopImagination,
    GuidedImagination,
    GuidedOptions,
    Imagination,
    SequentialImagination,
)
from sb3_polygrad.world_model.sampler import standardized_action_stats
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples

RESULTS = DIAGNOSTICS / "imagination_consistency"

ROW_LAGS = (0.0, 0.5, 1.0, 2.0)
TRAJECTORIES = 512
TUNING_ROUNDS = 300  # guidance-tuner updates before the guided sampler is measured (the tuner's rate is 0.03 on log g)
# The tuner's rate on log g for a model that did not imagine guided: the CPU entries' guidance_learning_rate.
TUNING_RATE = 0.03


def guided_start(model: PolyGRAD) -> tuple[float, float]:
    """``log g`` and the tuner's rate that guided imagination starts from: the model's own where it imagined guided,
    else the default scale and ``TUNING_RATE``."""
    imagination = model.imaginer.world_model_imagination()
    if isinstance(imagination, GuidedImagination):
        return imagination.log_guidance_scale.item(), imagination.learning_rate
    return float(np.log(GuidedOptions.guidance_scale)), TUNING_RATE


def methods(model: PolyGRAD, row_lags: Sequence[float] = ROW_LAGS) -> dict[str, Imagination]:
    """Every imagination the trained world model can run, by label (closed-loop imagination at each of ``row_lags``)."""
    log_g, rate = guided_start(model)
    out: dict[str, Imagination] = {
        "guided (paper)": GuidedImagination(model.world_model, model.policy, th.tensor(log_g), True, rate)
    }
    out["guided, bias-corrected"] = BiasCorrectedGuidance(model.world_model, model.policy, th.tensor(log_g), True, rate)
    if model.world_model.per_row_noise:
        for lag in row_lags:
            out[f"closed_loop, row lag {lag:g}"] = ClosedLoopImagination(model.world_model, model.policy, lag)
    if model.world_model.denoiser.causal_states:
        out["sequential (H - 1 passes)"] = SequentialImagination(model.world_model, model.policy)
    return out


def tune_guidance(guided: GuidedImagination, model: PolyGRAD) -> None:
    """Run the guidance tuner on this model, as training with guided imagination would have, before measuring."""
    for _ in range(TUNING_ROUNDS):
        start = model.replay_buffer.sample_windows(model.imagination_batch_size, model.horizon)
        guided.adapt(*standardized_action_stats(model.policy, guided.imagine(start)))


class BiasCorrectedGuidance(GuidedImagination):
    """The guided sampler with a second knob, measured here only: g is tuned on the standardised bias of the actions
    (more guidance while they are weaker than the policy's) and the sampler's action noise scale on their std, so that
    both reach their on-policy values (the paper's tuner holds only the std, with g)."""

    def adapt(self, action_std: float, action_bias: float) -> dict[str, float]:
        self.log_guidance_scale.sub_(self.learning_rate * action_bias)
        sampler = self.world_model.sampler
        sampler.action_guidance_noise_scale *= float(np.exp(self.learning_rate * (1.0 - action_std)))
        return {}


def seconds_per_imagination(method: Imagination, start: WindowSamples, repeats: int = 5) -> float:
    """Median wall-clock of one imagination of the training batch (one thread)."""
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        method.imagine(start)
        times.append(time.perf_counter() - tic)
    return float(np.median(times))


class StateErrors:
    """
    Squared state errors of imagined windows against the simulator, at k = 1 and k = H - 1, per start state.

    :param imagined: the imagined windows
    :param true_obs: the simulator's states for the same start states and actions, shape (N, H, O)
    :param alive: whether each window is still running at each step in the simulator, shape (N, H)
    """

    def __init__(self, imagined: ImaginedTrajectory, true_obs: np.ndarray, alive: np.ndarray) -> None:
        squared = ((imagined.observations.cpu().numpy() - true_obs) ** 2).mean(axis=-1)  # (N, H)
        steps = [1, squared.shape[1] - 1]
        self.errors = squared[:, steps]  # (N, 2)
        self.alive = alive[:, steps]

    def means(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Mean error at k = 1 and k = H - 1 over the windows (of ``rows``) still running there, shape (2,)."""
        errors, alive = self.errors[rows], self.alive[rows]
        return (errors * alive).sum(axis=0) / alive.sum(axis=0)

    def ratio_to(self, control: "StateErrors", resamples: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        """
        These errors as a multiple of the control's, with a 90% paired bootstrap interval over the start states (the
        mean is dominated by a few windows that diverge, so one set of start states gives a noisy ratio).

        :param control: errors of the control from the same start states
        :param resamples: bootstrap resamples
        :return: the ratios at k = 1 and k = H - 1, shape (2,), and their intervals, shape (2, 2) (low, high per k)
        """
        rng = np.random.default_rng(0)
        rows = rng.integers(len(self.errors), size=(resamples, len(self.errors)))
        ratios = np.stack([self.means(r) / control.means(r) for r in rows])  # (resamples, 2)
        return self.means() / control.means(), np.quantile(ratios, [0.05, 0.95], axis=0).T


def parse_overrides(pairs: list[str]) -> dict:
    """``key=value`` pairs, each value read as YAML (numbers, booleans, lists, mappings)."""
    return {key: yaml.safe_load(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="InvertedPendulum-v4")
    parser.add_argument("--entry", help="zoo entry to train with (default: the env's own)")
    parser.add_argument("--steps", type=int, default=12_000, help="env steps of training before the measurement")
    parser.add_argument("--set", nargs="*", default=[], help="constructor overrides, key=value (YAML values)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trajectories", type=int, default=TRAJECTORIES, help="recorded start states to imagine from")
    parser.add_argument("--load", type=Path, help="measure this saved model (with its replay buffer beside it, .pkl)")
    parser.add_argument("--save", type=Path, help="save the trained model and its replay buffer here")
    parser.add_argument("--name", default="", help="suffix of the results file")
    parser.add_argument(
        "--sampling-steps", nargs="+", type=int, help="also measure with these numbers of sampling steps (strided)"
    )
    parser.add_argument("--row-lags", nargs="+", type=float, default=list(ROW_LAGS), help="closed-loop row lags to measure")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    th.set_num_threads(1)

    overrides = parse_overrides(args.set)
    if args.load:
        model = PolyGRAD.load(args.load, env=gym.make(args.env))
        model.load_replay_buffer(args.load.with_suffix(".pkl"))
    else:
        entry = zoo_hyperparams("polygrad", args.entry or args.env)
        hyperparams = {k: v for k, v in entry.items() if k not in ("n_timesteps", "policy")}
        model = PolyGRAD("MlpPolicy", args.env, seed=args.seed, **{**hyperparams, **overrides})
        model.learn(args.steps, progress_bar=True)
        if args.save:
            model.save(args.save)
            model.save_replay_buffer(args.save.with_suffix(".pkl"))

    windows, starts, obs0, env = measurement_starts(model, args.trajectories, args.env)
    low, high = model.action_space.low, model.action_space.high  # type: ignore[attr-defined]
    rollouts = simulator_rollouts([gym.make(args.env) for _ in range(len(starts))], model.policy.sample_actions, obs0,
                                  starts, model.horizon, low, high)  # fmt: skip
    rollout_alive = (rollouts.dones.cumsum(dim=1) - rollouts.dones == 0).cpu().numpy()

    def control() -> StateErrors:
        """The world model, with its current sampling steps, given the actions of the policy's own rollouts."""
        given = model.world_model.sample_with_actions(obs0, rollouts.actions, generator=th.Generator().manual_seed(0))
        return StateErrors(given, rollouts.observations.cpu().numpy(), rollout_alive)

    timing_start = model.replay_buffer.sample_windows(model.imagination_batch_size, model.horizon)

    h = model.horizon
    lines = [
        f"# Imagination consistency: {args.env}, {model.num_timesteps} env steps, seed {args.seed}",
        "",
        f"Command: `python -m benchmarks.diagnostics.imagination_consistency {' '.join(_command_args(args))}`. "
        f"World model: `{model.denoiser}`, {model.world_model.schedule.n_sampling_steps} sampling steps of "
        f"{model.n_diffusion_steps}, per-row noise {model.world_model.per_row_noise}, trained with "
        f"`imagination={model.imagination!r}`. {len(starts)} recorded start states; imagined actions replayed open loop "
        f"in MuJoCo. Control: the same world model, with the same sampling steps, given the actions of the policy's own "
        "rollouts from the same states (its state MSE is in the rows named control); x control: the ratio of the two "
        "MSEs, with a 90% paired bootstrap interval over the start states in brackets. Seconds: one imagination of "
        f"{model.imagination_batch_size} trajectories, one thread, median of 5; x guided: against the guided sampler "
        "with the trained number of sampling steps.",
        "",
        f"| sampling steps | method | state MSE k = 1 | x control | state MSE k = {h - 1} | x control | std of z "
        "| bias of z | seconds | x guided |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    guided_seconds = None
    sampler = model.world_model.sampler
    noise_scale = sampler.action_guidance_noise_scale  # the model's own, which the bias-corrected tuner moves
    own_steps = model.world_model.schedule.n_sampling_steps
    for n_steps in [own_steps, *(k for k in args.sampling_steps or () if k != own_steps)]:
        model.world_model.set_n_sampling_steps(n_steps)
        reference = control()
        first, last = reference.means()
        own_actions = f"| {n_steps} | control: the policy's own actions | {first:.4f} | | {last:.4f} |"
        lines.append(own_actions + " |" * 5)
        for label, method in methods(model, args.row_lags).items():
            sampler.action_guidance_noise_scale = noise_scale
            if isinstance(method, GuidedImagination):
                tune_guidance(method, model)
                label += f", g = {method.log_guidance_scale.exp().item():.3g}"
                if isinstance(method, BiasCorrectedGuidance):
                    label += f", noise scale {sampler.action_guidance_noise_scale:.3g}"
            th.manual_seed(1)
            imagined = method.imagine(windows, th.Generator().manual_seed(0))
            true_obs, alive = replay(env, starts, imagined)
            errors = StateErrors(imagined, true_obs, alive)
            ratios, intervals = errors.ratio_to(reference)
            mse_and_ratio = [
                f"{mse:.4f} | {ratio:.2f} [{low:.2f}, {high:.2f}]"
                for mse, ratio, (low, high) in zip(errors.means(), ratios, intervals, strict=True)
            ]
            action_std, action_bias = standardized_action_stats(model.policy, imagined)
            seconds = seconds_per_imagination(method, timing_start)
            guided_seconds = guided_seconds or seconds
            lines.append(
                f"| {n_steps} | {label} | {' | '.join(mse_and_ratio)} "
                f"| {action_std:.2f} | {action_bias:+.2f} | {seconds:.3f} | {seconds / guided_seconds:.2f} |"
            )
    env.close()
    write(RESULTS / f"{args.env}{args.name}.md", lines)


def _command_args(args: argparse.Namespace) -> list[str]:
    out = [f"--env {args.env}", f"--steps {args.steps}", f"--seed {args.seed}"]
    if args.entry:
        out.append(f"--entry {args.entry}")
    if args.set:
        out.append("--set " + " ".join(args.set))
    if args.name:
        out.append(f"--name {args.name}")
    if args.trajectories != TRAJECTORIES:
        out.append(f"--trajectories {args.trajectories}")
    if args.row_lags != list(ROW_LAGS):
        out.append("--row-lags " + " ".join(f"{lag:g}" for lag in args.row_lags))
    if args.load:
        out.append(f"--load {args.load}")
    if args.sampling_steps:
        out.append("--sampling-steps " + " ".join(map(str, args.sampling_steps)))
    return out


if __name__ == "__main__":
    main()
