"""
The presets of ``python -m benchmarks.run``: what a preset is (envs, algorithms, seeds, hyperparameter overrides), and
the benchmarks proper, PolyGRAD against PPO, SAC and TRPO with each algorithm's RL Zoo hyperparameters.

The single-task diagnostics that explain the InvertedPendulum results are a separate group, in
``diagnostics/ip_presets.py``.
"""

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sb3_polygrad import PolyGRAD
from sb3_polygrad.zoo.registration import HyperparamsName, hyperparams_path


@dataclass(frozen=True)
class EnvSetting:
    """One env of a preset: its budget, evaluation cadence and the return that counts as solved."""

    env_id: str
    budget: int
    eval_freq: int
    threshold: float


@dataclass(frozen=True)
class Preset:
    """A grid of envs, algorithms and seeds."""

    envs: tuple[EnvSetting, ...]
    algos: tuple[str, ...] = ("polygrad", "ppo", "sac", "trpo")
    seeds: tuple[int, ...] = (0, 1, 2)
    n_eval_episodes: int = 10
    device: str = "cpu"
    # PolyGRAD's shipped zoo entries: the paper's (polygrad.yml) or the CPU-sized ones (polygrad_cpu.yml)
    polygrad_entries: HyperparamsName = "paper"
    hyperparam_overrides: dict[str, Any] = field(default_factory=dict)  # merged into each algorithm's zoo entry
    # PolyGRAD variants run beside the algorithms, as algorithm "polygrad[<label>]": label -> further overrides
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the variants drawn beside the algorithms in the report's main curves (None: all); with a subset, the report draws
    # every variant in a figure of its own
    plotted_variants: tuple[str, ...] | None = None

    def job_algos(self) -> tuple[str, ...]:
        """The preset's algorithms, then one ``polygrad[<label>]`` per variant."""
        return self.algos + tuple(f"polygrad[{label}]" for label in self.variants)

    def __post_init__(self) -> None:
        unknown = set(self.plotted_variants or ()) - set(self.variants)
        if unknown:
            raise ValueError(f"plotted_variants {sorted(unknown)} are not variants of the preset ({sorted(self.variants)})")

    def plotted_algos(self) -> tuple[str, ...]:
        """The algorithms of the report's main curves: the preset's, then its plotted variants."""
        labels = self.variants if self.plotted_variants is None else self.plotted_variants
        return self.algos + tuple(f"polygrad[{label}]" for label in labels)

    def variant_overrides(self, algo: str) -> dict[str, Any]:
        """The overrides of ``algo``'s variant (none for a plain algorithm); a ValueError for a label the preset lacks."""
        _, label = split_variant(algo)
        if label and label not in self.variants:
            raise ValueError(f"{algo}: the preset has no variant {label!r} (it has {sorted(self.variants)})")
        return self.variants.get(label, {})

    def hyperparams(self, algo: str, env_id: str) -> dict[str, Any]:
        """
        The zoo entry of ``algo``'s base algorithm for ``env_id``, with the preset's and the variant's overrides. An
        override that is a dict updates the entry's dict of the same name (``policy_kwargs``: a variant that changes
        ``init_std`` keeps the entry's ``net_arch``).
        """
        merged = zoo_hyperparams(split_variant(algo)[0], env_id, self.polygrad_entries)
        for overrides in (self.hyperparam_overrides, self.variant_overrides(algo)):
            for key, value in overrides.items():
                entry_value = merged.get(key)
                merged[key] = {**entry_value, **value} if isinstance(value, dict) and isinstance(entry_value, dict) else value
        return merged

    def zoo_config(self, algo: str) -> str:
        """The zoo hyperparameter file of ``algo``'s base algorithm in this preset (see :func:`zoo_config`)."""
        return zoo_config(split_variant(algo)[0], self.polygrad_entries)


def split_variant(algo: str) -> tuple[str, str]:
    """``"polygrad[label]"`` -> ``("polygrad", "label")``; a plain algorithm -> ``(algo, "")``."""
    base, _, label = algo.partition("[")
    return base, label.removesuffix("]")


def zoo_config(algo: str, polygrad_entries: HyperparamsName = "paper") -> str:
    """
    Path of the algorithm's zoo hyperparameter file: PolyGRAD's are the ones its package ships.

    :param algo: a base algorithm (no variant label)
    :param polygrad_entries: which of PolyGRAD's files, the paper's entries or the CPU-sized ones
    """
    import rl_zoo3

    if algo == "polygrad":
        return str(hyperparams_path(polygrad_entries))
    return str(Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml")


def zoo_hyperparams(algo: str, env_id: str, polygrad_entries: HyperparamsName = "paper") -> dict[str, Any]:
    """
    The zoo's entry for ``env_id``; where it has none, the tuned entry of the same task at another version (the zoo's
    MuJoCo entries predate some versions, e.g. PPO is tuned on ``InvertedPendulum-v2`` only), then ``default``.

    :param algo: a base algorithm
    :param env_id: the env
    :param polygrad_entries: which of PolyGRAD's files (see :func:`zoo_config`)
    """
    import yaml

    entries = yaml.safe_load(Path(zoo_config(algo, polygrad_entries)).read_text())
    task = env_id.rsplit("-v", 1)[0]
    for key in [env_id, *(f"{task}-v{v}" for v in (4, 5, 3, 2))]:
        if key in entries:
            return dict(entries[key])
    return dict(entries["default"])


IP_20K = EnvSetting("InvertedPendulum-v4", 20_000, 2_000, 950.0)


# The paper's discount and reward scale, PolyGRAD's defaults: the Hopper CPU entry's learner before it took the zoo's.
PAPER_DISCOUNT = {key: inspect.signature(PolyGRAD).parameters[key].default for key in ("gamma", "reward_scale")}
# The Hopper CPU entry's: the discount of the zoo's PPO Hopper entry, with the imagined rewards scaled for the critic.
HOPPER_DISCOUNT = {"gamma": 0.999, "reward_scale": 0.1}
# The Hopper CPU entry's first learner, before it took this package's learner extensions: the critic target's speed,
# imagination's start states, terminal flags and action std of the constructor defaults (the paper's). hopper-100k's
# variants labelled entry1-* are overrides of it, so that each label's command still reproduces its runs.
ENTRY1_LEARNER: dict[str, Any] = {
    key: inspect.signature(PolyGRAD).parameters[key].default
    for key in ("tau", "imagination_start_window", "imagined_terminations", "action_std_schedule")
}


# The first learner's steps towards the entry's: a 4x faster critic target, start states from the newest 5k env steps,
# and the task's termination rule on the imagined states.
STARTS5K_RULE: dict[str, Any] = {"tau": 0.02, "imagination_start_window": 5_000, "imagined_terminations": "env_rule"}


def entry1(**overrides: Any) -> dict[str, Any]:
    """The overrides of a variant of the Hopper CPU entry's first learner (see :data:`ENTRY1_LEARNER`)."""
    return {**ENTRY1_LEARNER, **overrides}


def locomotion_100k(setting: EnvSetting, variants: dict[str, dict[str, Any]] | None = None) -> Preset:
    """
    One of the paper's tasks at CPU scale: PolyGRAD's CPU entry, PPO and SAC, and the simulator-imagination diagnostic
    (the same learner on MuJoCo rollouts from the same start states), the report's main curves; the further variants
    are drawn in a figure of their own.

    :param setting: the task, its budget and evaluation cadence
    :param variants: further PolyGRAD variants of the task (label -> overrides of its CPU entry)
    """
    return Preset(
        envs=(setting,),
        algos=("polygrad", "ppo", "sac"),
        polygrad_entries="cpu",
        variants={"simulator": {"imagination": "simulator"}, **(variants or {})},
        plotted_variants=("simulator",),
    )


# Every algorithm with its zoo hyperparameters, 3 seeds: PolyGRAD against PPO, SAC and TRPO.
BENCHMARK_PRESETS: dict[str, Preset] = {
    # CPU-sized: two small MuJoCo tasks, 20k env steps.
    "quick": Preset(
        envs=(
            IP_20K,
            EnvSetting("InvertedDoublePendulum-v4", 20_000, 2_000, 9_000.0),
        ),
    ),
    # The paper's locomotion tasks at 100k env steps: PolyGRAD's CPU-sized entry (polygrad_cpu.yml) against PPO and SAC,
    # and the same learner given simulator rollouts instead of imagination, a diagnostic (run it on seeds 0 and 1).
    # Hopper's entry1-* variants are its learner's history (docs/results.md): the first entry (a critic target moving
    # at tau 0.005, imagination from the whole buffer, the world model's terminal flags, a learnt action std), with the
    # paper's discount (its simulator diagnostic and the learner's two levers, each alone: twice the imagine-then-update
    # rounds per training call, and actor steps three times as large), the zoo's discount without the reward scale, a
    # policy starting from an action std of 0.3 instead of 1 (the zoo's PPO Hopper entry starts from 0.14), and its
    # critic's target moving 4x as fast (benchmarks/critic_check.py found the critic at 0.40x the returns of a standing
    # policy at 55k env steps), alone, on simulator rollouts, and with actor steps three times as large, and with
    # imagination started only from the newest 5k env steps (at a standing checkpoint, the start states of the first
    # 20k env steps, a quarter of the buffer, gave 91% of the squared advantages: the actor learnt mostly at states its
    # policy no longer visits), and with the task's own termination rule on the imagined states besides (starts5k
    # hopped at 50k-65k, then fell, its critic overvaluing the falling policy while imagination flagged 5% of
    # trajectories as ending where the simulator ended 10%), and that with its policy started at an action std of 0.3
    # or 0.5. The entry itself then moves its std from 1.0 to 0.3 over the budget (at 45k env steps the mean action of
    # the rule's seeds 1 and 2, which the evaluations use, fell after 90 and 174 steps, their sampled actions after
    # 2,951 and 500: a gait that relies on its noise). tau0.2 is the entry with a critic target 10x as fast again (at
    # seed 1's 90k checkpoint the critic valued its falling policy at 5.5x its returns; 1,250 critic-only steps, an
    # evaluation interval's, brought it to 5.0x at tau 0.02, 4.8x at 10x the critic's rate and 1.4x at tau 0.2:
    # benchmarks/critic_check.py --critic-updates).
    "hopper-100k": locomotion_100k(
        EnvSetting("Hopper-v4", 100_000, 5_000, 1_000.0),
        {
            "tau0.2": {"tau": 0.2},
            "entry1": entry1(),
            "entry1-simulator": entry1(imagination="simulator"),
            "entry1-gamma0.99": entry1(**PAPER_DISCOUNT),
            "entry1-gamma0.99-simulator": entry1(**PAPER_DISCOUNT, imagination="simulator"),
            "entry1-gamma0.99-updates2": entry1(**PAPER_DISCOUNT, agent_gradient_steps=2),
            "entry1-gamma0.99-step0.03": entry1(**PAPER_DISCOUNT, target_policy_update=0.03),
            "entry1-rs1": entry1(reward_scale=1.0),
            "entry1-std0.3": entry1(policy_kwargs={"init_std": 0.3}),
            "entry1-tau0.02": entry1(tau=0.02),
            "entry1-tau0.02-simulator": entry1(tau=0.02, imagination="simulator"),
            "entry1-tau0.02-step0.03": entry1(tau=0.02, target_policy_update=0.03),
            "entry1-tau0.02-starts5k": entry1(tau=0.02, imagination_start_window=5_000),
            "entry1-tau0.02-starts5k-rule": entry1(**STARTS5K_RULE),
            "entry1-tau0.02-starts5k-rule-std0.3": entry1(**STARTS5K_RULE, policy_kwargs={"init_std": 0.3}),
            "entry1-tau0.02-starts5k-rule-std0.5": entry1(**STARTS5K_RULE, policy_kwargs={"init_std": 0.5}),
        },
    ),
    # Walker2d's entry takes Hopper's learner with its discount and reward scale (it too ends an episode on a fall):
    # against the paper's discount.
    "walker2d-100k": locomotion_100k(EnvSetting("Walker2d-v4", 100_000, 5_000, 1_000.0), {"gamma0.99": PAPER_DISCOUNT}),
    # HalfCheetah never terminates, so its entry keeps the paper's discount: against Hopper's. std0.3to0.15 moves the
    # action std from 0.3 to 0.15 instead of from 1.0 to 0.3 (the policy's std floor is 0.1): the zoo's PPO HalfCheetah
    # entry starts from a std of 0.14 (log_std_init -2), and at 55k env steps the entry's seed 0 earned 282 with its
    # sampled actions (std 0.62) against 637 with its mean action: its noise costs more than half of its return here.
    "halfcheetah-100k": locomotion_100k(
        EnvSetting("HalfCheetah-v4", 100_000, 5_000, 1_500.0),
        {"gamma0.999-rs0.1": HOPPER_DISCOUNT, "std0.3to0.15": {"action_std_schedule": [0.3, 0.15]}},
    ),
    # The paper's tasks and budgets: GPU-sized.
    "paper": Preset(
        envs=(
            EnvSetting("Hopper-v4", 1_000_000, 10_000, 3_000.0),
            EnvSetting("Walker2d-v4", 1_500_000, 10_000, 3_000.0),
            EnvSetting("HalfCheetah-v4", 1_500_000, 10_000, 5_000.0),
        ),
        device="auto",
    ),
}
