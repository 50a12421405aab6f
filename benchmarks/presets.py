"""
The presets of ``python -m benchmarks.run``: what a preset is (envs, algorithms, seeds, hyperparameter overrides), and
the benchmarks proper, PolyGRAD against PPO, SAC, TRPO and TQC with each algorithm's RL Zoo hyperparameters.

The variants that reproduce the runs kept with a preset's results are data beside them, in
``results/<preset>/variants.yml`` (:func:`recorded_variants`). The single-task diagnostics that explain the
InvertedPendulum results are a separate group, in ``diagnostics/ip_presets.py``.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sb3_polygrad.imagination import imagination_options
from sb3_polygrad.zoo.registration import HyperparamsName, hyperparams_path

RESULTS = Path(__file__).parent / "results"


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

    def label(self, algo: str) -> str:
        """The legend and table name of ``algo``: a variant that imagines with the simulator is marked as a diagnostic."""
        if self.variant_overrides(algo).get("imagination") == "simulator":
            return f"{algo} (diagnostic: simulator rollouts)"
        return algo

    def hyperparams(self, algo: str, env_id: str) -> dict[str, Any]:
        """
        The zoo entry of ``algo``'s base algorithm for ``env_id``, with the preset's and the variant's overrides merged
        in by :func:`merge_overrides`.
        """
        merged = zoo_hyperparams(split_variant(algo)[0], env_id, self.polygrad_entries)
        for overrides in (self.hyperparam_overrides, self.variant_overrides(algo)):
            merged = merge_overrides(merged, overrides)
        return merged

    def zoo_config(self, algo: str) -> str:
        """The zoo hyperparameter file of ``algo``'s base algorithm in this preset (see :func:`zoo_config`)."""
        return zoo_config(split_variant(algo)[0], self.polygrad_entries)


def merge_overrides(entry: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """
    A zoo entry with hyperparameters overridden. An override that is a dict updates the entry's dict of the same name
    (``policy_kwargs``: a variant that changes ``init_std`` keeps the entry's ``net_arch``). An override that names
    another imagination method keeps those of the entry's ``imagination_kwargs`` that the method takes (a simulator
    variant of a closed-loop entry keeps its ``start_window``, not its ``row_lag``), as the options of one method mean
    nothing to another.

    :param entry: the entry (not modified)
    :param overrides: hyperparameters to override
    :return: the merged hyperparameters
    """
    merged = dict(entry)
    method = overrides.get("imagination", merged.get("imagination", "guided"))
    if method != merged.get("imagination", "guided") and "imagination_kwargs" in merged:
        given = {**merged["imagination_kwargs"], **overrides.get("imagination_kwargs", {})}
        taken = imagination_options(method, given)
        merged["imagination_kwargs"] = {k: v for k, v in merged["imagination_kwargs"].items() if k in taken}
    for key, value in overrides.items():
        entry_value = merged.get(key)
        merged[key] = {**entry_value, **value} if isinstance(value, dict) and isinstance(entry_value, dict) else value
    return merged


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
    entries = yaml.safe_load(Path(zoo_config(algo, polygrad_entries)).read_text())
    task = env_id.rsplit("-v", 1)[0]
    for key in [env_id, *(f"{task}-v{v}" for v in (4, 5, 3, 2))]:
        if key in entries:
            return dict(entries[key])
    return dict(entries["default"])


def recorded_variants(preset_name: str) -> dict[str, dict[str, Any]]:
    """
    The PolyGRAD variants kept beside a preset's results, so that the runs there can be reproduced by their labels:
    ``results/<preset>/variants.yml``, label -> overrides of the preset's PolyGRAD entry (none where the file is absent).

    :param preset_name: the preset
    :return: label -> overrides, in the file's order
    """
    path = RESULTS / preset_name / "variants.yml"
    variants = yaml.safe_load(path.read_text()) if path.exists() else {}
    malformed = [label for label, overrides in variants.items() if not isinstance(overrides, dict)]
    if malformed:
        raise ValueError(f"{path}: the variants {malformed} are not mappings of constructor arguments to values")
    return variants


IP_20K = EnvSetting("InvertedPendulum-v4", 20_000, 2_000, 950.0)


def locomotion_100k(name: str, setting: EnvSetting) -> Preset:
    """
    One of the paper's tasks at CPU scale: PolyGRAD's CPU entry (``polygrad_cpu.yml``) against PPO, SAC and TQC, and the
    simulator-imagination diagnostic (the same learner on MuJoCo rollouts from the same start states: a perfect world
    model), the report's main curves; the variants recorded beside the preset's results are drawn in a figure of their
    own.

    :param name: the preset's name, whose results folder holds its recorded variants
    :param setting: the task, its budget and evaluation cadence
    """
    return Preset(
        envs=(setting,),
        algos=("polygrad", "ppo", "sac", "tqc"),
        polygrad_entries="cpu",
        variants={"simulator": {"imagination": "simulator"}, **recorded_variants(name)},
        plotted_variants=("simulator",),
    )


# Every algorithm with its zoo hyperparameters, 3 seeds: PolyGRAD against PPO, SAC and TRPO.
BENCHMARK_PRESETS: dict[str, Preset] = {
    # CPU-sized: two small MuJoCo tasks, 20k env steps.
    "quick": Preset(envs=(IP_20K, EnvSetting("InvertedDoublePendulum-v4", 20_000, 2_000, 9_000.0))),
    # The paper's locomotion tasks at 100k env steps, on a CPU.
    **{
        name: locomotion_100k(name, EnvSetting(env_id, 100_000, 5_000, threshold))
        for name, env_id, threshold in [
            ("hopper-100k", "Hopper-v4", 1_000.0),
            ("walker2d-100k", "Walker2d-v4", 1_000.0),
            ("halfcheetah-100k", "HalfCheetah-v4", 1_500.0),
        ]
    },
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
