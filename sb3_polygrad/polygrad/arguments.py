"""The admissible range of every numeric argument of PolyGRAD, of the options of its components (``actor_critic_kwargs``,
``imagination_kwargs``) and of the world-model, denoiser and policy arguments it passes on: one table, checked once at
construction (``tests/test_arguments.py`` fails for a numeric argument or option without an entry, so a new one's range
is declared here).

Ranges follow from what an argument means: a probability or a discount lies in [0, 1], a rate or a scale is positive,
a count of updates may be 0 (none), a size must be at least 1. Relations between arguments (``learning_starts >=
horizon``, ``n_sampling_steps <= n_diffusion_steps``, ``init_std > min_std``) are checked where they are used.
"""

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    """
    An interval, written as in mathematics: ``"[0, 1)"``, ``"(0, inf)"``, ``"[-1, inf)"``.

    :param interval: the interval; ``[`` and ``]`` include a bound, ``(`` and ``)`` exclude it
    :param integer: whether the values must also be integers
    """

    interval: str
    integer: bool = False

    def __post_init__(self) -> None:
        # A malformed table fails at import.
        if not re.fullmatch(r"[\[(][^,]+, [^,]+[\])]", self.interval):
            raise ValueError(f"not an interval: {self.interval!r}")
        low, high = self.bounds
        if not low <= high:
            raise ValueError(f"empty interval: {self.interval!r}")

    @property
    def bounds(self) -> tuple[float, float]:
        """The lower and upper bound (``inf`` where unbounded)."""
        low, high = self.interval[1:-1].split(",")
        return float(low), float(high)

    def __contains__(self, value: float) -> bool:
        low, high = self.bounds
        above = low <= value if self.interval[0] == "[" else low < value
        below = value <= high if self.interval[-1] == "]" else value < high
        return above and below  # False for NaN

    def check(self, name: str, value: Any) -> None:
        """
        :param name: the argument, as the error names it
        :param value: its value
        :raises ValueError: where ``value`` is not a number (an integer if ``integer``) in the interval
        """
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or float(value) not in self:
            what = "an integer" if self.integer else "a number"
            raise ValueError(f"{name} must be {what} in {self.interval}, got {value!r}")


def real(interval: str) -> Range:
    """:param interval: see ``Range``
    :return: a range of real numbers"""
    return Range(interval)


def integer(interval: str) -> Range:
    """:param interval: see ``Range``
    :return: a range of integers"""
    return Range(interval, integer=True)


RANGES: dict[str, Range] = {
    # PolyGRAD: the arguments it shares with SB3's off-policy algorithms
    "learning_rate": real("(0, inf)"),  # a schedule: its value at the start (it may decay to 0)
    "buffer_size": integer("[1, inf)"),
    "learning_starts": integer("[0, inf)"),
    "batch_size": integer("[1, inf)"),
    "tau": real("(0, 1]"),  # 0 would freeze the critic's target; 1 copies the critic
    "gamma": real("[0, 1]"),
    "train_freq": integer("[1, inf)"),  # of a (n, unit) tuple: n
    "gradient_steps": integer("[-1, inf)"),  # -1: as many as env steps collected (SB3)
    "stats_window_size": integer("[1, inf)"),
    "verbose": integer("[0, 2]"),
    "seed": integer("[0, 4294967295]"),  # NumPy's seeds
    # PolyGRAD: the actor-critic on imagined data
    "critic_learning_rate": real("(0, inf)"),
    "imagination_batch_size": integer("[1, inf)"),
    "gae_lambda": real("[0, 1]"),
    "ent_coef": real("[0, inf)"),
    "agent_gradient_steps": integer("[0, inf)"),
    "imagination_epochs": integer("[1, inf)"),
    # actor_critic_kwargs: ActorCriticConfig
    "reward_scale": real("(0, inf)"),  # 0 would erase the rewards
    "max_grad_norm": real("(0, inf]"),  # inf: no clipping
    "target_policy_update": real("(0, inf)"),
    "actor_lr_learning_rate": real("[0, inf)"),
    "line_search_tolerance": real("[0, inf)"),
    "line_search_ratio": real("(0, 1)"),  # the rate moves by this factor, or its inverse, at each retry
    "line_search_max_iters": integer("[0, inf)"),
    "real_vf_coef": real("[0, inf)"),
    # PolyGRAD: the world model and imagination
    "world_model_learning_rate": real("(0, inf)"),
    "world_model_warmup": integer("[0, inf)"),
    "horizon": integer("[2, inf)"),  # a start state and at least one imagined step
    "n_diffusion_steps": integer("[1, inf)"),
    "noise_schedule_tau": real("(0, inf)"),
    "n_sampling_steps": integer("[1, inf)"),
    # imagination_kwargs: ImaginationSetup and the methods' options (sb3_polygrad/imagination)
    "start_window": integer("[1, inf)"),  # None: the whole buffer
    "guidance_scale": real("(0, inf)"),  # tuned as log g
    "guidance_learning_rate": real("[0, inf)"),
    "action_clip_std": real("(0, inf)"),
    "state_change_clip": real("(0, inf)"),
    "state_change_clip_steps": integer("[0, inf)"),
    "action_guidance_noise_scale": real("[0, inf)"),
    "row_lag": real("[0, inf)"),  # 0: every row denoised together
    # world_model_kwargs: DiffusionWorldModel
    "action_condition_noise_scale": real("[0, inf)"),
    "ema_decay": real("[0, 1)"),
    "ema_update_every": integer("[1, inf)"),
    "ema_start": integer("[0, inf)"),
    # world_model_kwargs["denoiser_kwargs"]: the denoisers
    "hidden_dim": integer("[1, inf)"),
    "num_layers": integer("[1, inf)"),
    "embed_dim": integer("[1, inf)"),
    "d_model": integer("[1, inf)"),
    "n_layers": integer("[1, inf)"),
    "n_heads": integer("[1, inf)"),
    # policy_kwargs: PolyGRADPolicy
    "init_std": real("(0, inf)"),
    "min_std": real("[0, inf)"),
}
"""Range of each argument by name. A name means the same wherever PolyGRAD passes it (``horizon`` of PolyGRAD is the
world model's and the denoiser's)."""


def _scalar(value: Any) -> Any:
    # learning_rate may be a schedule of the remaining progress (1 at the start), train_freq a (n, unit) tuple.
    if callable(value):
        return value(1.0)
    return value[0] if isinstance(value, tuple) else value


def _check_group(prefix: str, arguments: Mapping[str, Any]) -> None:
    for name, value in arguments.items():
        if name in RANGES and value is not None:  # None: the argument's "off" or "default"
            RANGES[name].check(f"{prefix}[{name!r}]" if prefix else name, _scalar(value))


def check_arguments(arguments: Mapping[str, Any]) -> None:
    """
    Check PolyGRAD's arguments, and those inside ``actor_critic_kwargs``, ``imagination_kwargs``, ``world_model_kwargs``,
    its ``denoiser_kwargs`` and ``policy_kwargs``, against ``RANGES``. Names without an entry (not numeric, or a
    misspelling that the receiving class rejects) pass.

    :param arguments: PolyGRAD's constructor arguments by name
    :raises ValueError: naming the first argument out of its range, and the range
    """
    world_model_kwargs = arguments.get("world_model_kwargs") or {}
    _check_group("", arguments)
    _check_group("actor_critic_kwargs", arguments.get("actor_critic_kwargs") or {})
    _check_group("imagination_kwargs", arguments.get("imagination_kwargs") or {})
    _check_group("world_model_kwargs", world_model_kwargs)
    _check_group("world_model_kwargs['denoiser_kwargs']", world_model_kwargs.get("denoiser_kwargs") or {})
    _check_group("policy_kwargs", arguments.get("policy_kwargs") or {})


# Arguments of earlier versions, saved with their models, that are now options of PolyGRAD's components.
MOVED_ARGUMENTS: dict[str, str] = {
    "reward_scale": "actor_critic_kwargs['reward_scale']",
    "action_std_schedule": "actor_critic_kwargs['action_std_schedule']",
    "imagination_row_lag": "imagination_kwargs['row_lag']",
    "imagination_start_window": "imagination_kwargs['start_window']",
    "imagined_terminations": "imagination_kwargs['terminations']",
    "guidance_scale": "imagination_kwargs['guidance_scale']",
}


def refuse_moved_arguments(attributes: Mapping[str, Any]) -> None:
    """
    :param attributes: a model's attributes, as ``load`` restores them from its file
    :raises ValueError: for a model saved before PolyGRAD grouped its options (its options would otherwise be lost)
    """
    moved = [name for name in MOVED_ARGUMENTS if name in attributes]
    if moved:
        raise ValueError(
            f"this model was saved by an earlier sb3-polygrad, whose arguments {moved} are now "
            f"{[MOVED_ARGUMENTS[name] for name in moved]}: load it with that version"
        )
