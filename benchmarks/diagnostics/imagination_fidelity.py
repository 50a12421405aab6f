"""
How faithful and how on-policy PolyGRAD's imagination is, step by step, on a run of a zoo entry.

Trains PolyGRAD with its zoo hyperparameters (plus ``--denoiser``) for ``--steps`` env steps, then imagines from 512
recorded start states and replays the imagined actions in MuJoCo from the same states. Per imagined step k it reports
the standardised spread of the actions at the imagined states (what the guidance tuner sees), the correlation of the
actions with the policy's mean at the states they really lead to, and the state error; then the share of windows that
end in imagination, in the replay of its actions, and in the policy's own rollouts from the same states
(``simulator_rollouts``, what ``imagination="simulator"`` learns from); and, as a control, the error of the same world
model sampled without guidance on the actions of those rollouts (``sample_with_actions``).

With ``--sweep`` it writes, instead, how the same trained model's guided imagination trades the two against each other
under other sampler settings (sampling steps, action noise scale, guidance scale): the one-step state error given the
imagined actions, the share of windows that end, and the standardised spread and bias of the actions.

    python -m benchmarks.diagnostics.imagination_fidelity --steps 12000
    python -m benchmarks.diagnostics.imagination_fidelity --steps 8000 --denoiser causal_mlp
    python -m benchmarks.diagnostics.imagination_fidelity --steps 12000 --sweep

Writes ``benchmarks/results/diagnostics/imagination_fidelity/<env>_<denoiser>_<steps>[_sweep].md``.
"""

import argparse
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from benchmarks.diagnostics.ip_presets import GUIDED_ENTRY
from benchmarks.presets import merge_overrides, zoo_hyperparams
from sb3_polygrad import PolyGRAD
from sb3_polygrad.common.simulator import replay_actions, simulator_rollouts, to_env_actions
from sb3_polygrad.world_model.sampler import standardized_action_stats
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples

RESULTS = DIAGNOSTICS / "imagination_fidelity"

# Sampler settings of the sweep: (sampling steps, action noise scale, guidance scale relative to the tuned one)
SWEEP = [(k, 1.0, 1.0) for k in (4, 8, 16, 32)] + [
    (16, lam, mult) for lam in (1.0, 0.5, 0.0) for mult in (0.25, 1.0, 4.0) if (lam, mult) != (1.0, 1.0)
]


def replay(env: gym.Env, starts: np.ndarray, imagined: ImaginedTrajectory) -> tuple[np.ndarray, np.ndarray]:
    """
    The true states of the imagined actions, replayed open loop from the recorded simulator states.

    :return: the states (imagined ones at k = 0, the start states) and whether the episode still runs at each k
    """
    low, high = env.action_space.low, env.action_space.high  # type: ignore[attr-defined]
    actions = imagined.actions.cpu().numpy()
    true_obs = imagined.observations.cpu().numpy().copy()
    alive = np.ones(actions.shape[:2], dtype=bool)
    for i in range(len(actions)):
        replayed, _, steps, terminated = replay_actions(env, starts[i], to_env_actions(actions[i, :-1], low, high))
        true_obs[i, 1:] = replayed
        if terminated:
            alive[i, steps:] = False  # the state after the terminating step is not an episode state
    return true_obs, alive


def measurement_starts(
    model: PolyGRAD, n_trajectories: int, env_id: str
) -> tuple[WindowSamples, np.ndarray, th.Tensor, gym.Env]:
    """
    The recorded windows that every measurement starts from (the same for a given buffer), and an env to replay in.

    :return: the windows, their start simulator states, their start observations and a reset env
    """
    th.manual_seed(0)
    windows = model.replay_buffer.sample_windows(n_trajectories, model.horizon, np.random.default_rng(0))
    assert windows.sim_states is not None
    env = gym.make(env_id)
    env.reset(seed=0)
    return windows, windows.sim_states[:, 0].cpu().numpy(), windows.observations[:, 0], env


def sweep(model: PolyGRAD, env: gym.Env, starts: np.ndarray, obs0: th.Tensor) -> list[str]:
    """Guided imagination of the trained model under each setting of ``SWEEP``, from the same start states."""
    world_model, sampler = model.world_model, model.world_model.sampler
    tuned_scale, n_steps = guidance_scale(model), world_model.schedule.n_sampling_steps
    own_noise_scale = sampler.action_guidance_noise_scale
    lines = [
        "| sampling steps | action noise scale | guidance scale | state MSE k = 1 | imagination ends | replay ends "
        "| std of z | bias of z |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, noise_scale, mult in [row for row in SWEEP if row[0] <= world_model.schedule.n_diffusion_steps]:
        world_model.set_n_sampling_steps(k)
        sampler.action_guidance_noise_scale = noise_scale
        th.manual_seed(0)
        imagined = world_model.imagine(obs0, model.policy, tuned_scale * mult)
        true_obs, alive = replay(env, starts, imagined)
        state_se = ((imagined.observations.cpu().numpy()[:, 1] - true_obs[:, 1]) ** 2).mean(axis=-1)
        action_std, action_bias = standardized_action_stats(model.policy, imagined)
        lines.append(
            f"| {k} | {noise_scale:g} | {mult:g}x | {state_se[alive[:, 1]].mean():.3f} "
            f"| {imagined.dones[:, :-1].amax(dim=1).mean().item():.0%} | {1.0 - alive[:, -1].mean():.0%} "
            f"| {action_std:.2f} | {action_bias:+.2f} |"
        )
    world_model.set_n_sampling_steps(n_steps)
    sampler.action_guidance_noise_scale = own_noise_scale
    return lines


def guidance_scale(model: PolyGRAD) -> float:
    """:return: the tuned guidance scale of a model with guided imagination"""
    log_scale = model.log_guidance_scale
    assert log_scale is not None, "guided imagination tunes a guidance scale"
    return log_scale.exp().item()


def guided_hyperparams(env_id: str, denoiser: str) -> dict[str, Any]:
    """
    The env's zoo entry with guided imagination, which this diagnostic measures, and ``denoiser``: a closed-loop entry
    runs as its guided counterpart, InvertedPendulum's as the guided entry its results came from (``GUIDED_ENTRY``).

    :param env_id: the env
    :param denoiser: the denoiser
    :return: PolyGRAD's constructor arguments
    """
    guided = GUIDED_ENTRY if env_id.startswith("InvertedPendulum") else {"imagination": "guided"}
    hyperparams = merge_overrides(merge_overrides(zoo_hyperparams("polygrad", env_id), guided), {"denoiser": denoiser})
    return {k: v for k, v in hyperparams.items() if k not in ("n_timesteps", "policy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="InvertedPendulum-v4")
    parser.add_argument("--steps", type=int, default=12_000, help="env steps of training before the measurement")
    parser.add_argument("--denoiser", default="mlp", choices=["mlp", "causal_mlp", "transformer"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trajectories", type=int, default=512)
    parser.add_argument("--sweep", action="store_true", help="other sampler settings on the trained model instead")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    th.set_num_threads(1)

    model = PolyGRAD("MlpPolicy", args.env, seed=args.seed, **guided_hyperparams(args.env, args.denoiser))
    model.learn(args.steps, progress_bar=True)

    _, starts, obs0, env = measurement_starts(model, args.trajectories, args.env)
    name = f"{args.env}_{args.denoiser}_{args.steps}"
    command = (
        f"`python -m benchmarks.diagnostics.imagination_fidelity --env {args.env} --steps {args.steps} "
        f"--denoiser {args.denoiser} --seed {args.seed}{' --sweep' if args.sweep else ''}`"
    )
    if args.sweep:
        lines = [
            f"# Guided imagination under other sampler settings: {args.env}, `{args.denoiser}`, {args.steps} env "
            f"steps, seed {args.seed}",
            "",
            f"Command: {command}. {len(starts)} recorded start states; the trained model's sampler settings are "
            f"{model.world_model.schedule.n_sampling_steps} sampling steps, action noise scale "
            f"{model.world_model.sampler.action_guidance_noise_scale:g} and the tuned guidance scale "
            f"{guidance_scale(model):.3f} (1x). The state error is one step in, where the start state "
            "is exact; z are the actions standardised by the policy at the imagined states (1 and 0 on-policy).",
            "",
            *sweep(model, env, starts, obs0),
        ]
        write(RESULTS / f"{name}_sweep.md", lines)
        return
    imagined = model.world_model.imagine(obs0, model.policy, guidance_scale(model))
    low, high = model.action_space.low, model.action_space.high  # type: ignore[attr-defined]
    actions = imagined.actions.cpu().numpy()
    true_obs, alive = replay(env, starts, imagined)  # s_k for k >= 1, alive while the episode runs
    with th.no_grad():
        mean_imagined, std = model.policy.action_distribution_params(imagined.observations)
        mean_true, _ = model.policy.action_distribution_params(th.as_tensor(true_obs))
    z = ((imagined.actions - mean_imagined) / std).cpu().numpy()
    state_se = ((imagined.observations.cpu().numpy() - true_obs) ** 2).mean(axis=-1)

    rollouts = simulator_rollouts([gym.make(args.env) for _ in range(len(starts))], model.policy.sample_actions, obs0,
                                  starts, model.horizon, low, high)  # fmt: skip
    env.close()
    action_std, action_bias = standardized_action_stats(model.policy, imagined)
    # The same world model, unguided, given the actions of the policy's own closed-loop rollouts: how accurate it is
    # when the actions fit the states they are taken in, which guided imagination does not ensure.
    given = model.world_model.sample_with_actions(obs0, rollouts.actions, generator=th.Generator().manual_seed(0))
    given_se = ((given.observations - rollouts.observations).square().mean(dim=-1)).cpu().numpy()
    rollout_alive = (rollouts.dones.cumsum(dim=1) - rollouts.dones == 0).cpu().numpy()  # no termination before row k

    lines = [
        f"# Imagination fidelity: {args.env}, `{args.denoiser}`, {args.steps} env steps, seed {args.seed}",
        "",
        f"Command: {command}. {len(starts)} recorded start states; imagined actions "
        "replayed open loop in MuJoCo from them. Policy std "
        f"{model.actor.std().mean().item():.2f}, guidance scale {guidance_scale(model):.3f}.",
        "",
        "| k | std of z at imagined states | corr(a, pi's mean at the true state) | state MSE | replay alive "
        "| state MSE given the policy's own actions |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for k in range(model.horizon):
        live = alive[:, k]
        corr = np.corrcoef(actions[live, k].ravel(), mean_true[live, k].numpy().ravel())[0, 1] if live.sum() > 2 else np.nan
        lines.append(
            f"| {k} | {z[:, k].std():.2f} | {corr:+.2f} | {state_se[live, k].mean():.3f} | {live.mean():.2f} "
            f"| {given_se[rollout_alive[:, k], k].mean():.3f} |"
        )
    ends = {
        "imagination": imagined.dones[:, :-1].amax(dim=1).mean().item(),
        "replay of the imagined actions": 1.0 - alive[:, -1].mean(),
        "the policy's own rollouts": rollouts.dones[:, :-1].amax(dim=1).mean().item(),
        "the world model given the policy's own actions": given.dones[:, :-1].amax(dim=1).mean().item(),
    }
    lines += [
        "",
        f"Standardised imagined actions (steps 0..H-2): std {action_std:.2f}, bias {action_bias:+.2f} "
        "(`train/imagined_action_std`, `train/imagined_action_bias`; 1 and 0 on-policy). Mean |a| "
        f"{np.abs(actions[:, :-1]).mean():.2f} against mean |mu| {mean_imagined[:, :-1].abs().mean().item():.2f}.",
        "",
        "Windows that end within the horizon: " + "; ".join(f"{name} {share:.0%}" for name, share in ends.items()) + ".",
    ]
    write(RESULTS / f"{name}.md", lines)


def write(out: Path, lines: list[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
