"""
The imagination methods by name, and ``PolyGRAD(imagination=..., imagination_kwargs=...)`` read into a method, its
options and the options every method takes.
"""

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sb3_polygrad.imagination.in_simulator import WORLD_MODEL_IMAGINATIONS, SimulatorImagination
from sb3_polygrad.imagination.interface import Imagination
from sb3_polygrad.imagination.terminations import TERMINATIONS, RuleTerminations, Terminations
from sb3_polygrad.world_model.world_model import DENOISERS

if TYPE_CHECKING:
    from sb3_polygrad.polygrad.polygrad import PolyGRAD

ImaginationName = Literal["guided", "closed_loop", "sequential", "simulator"]
IMAGINATIONS: dict[str, type[Imagination]] = {**WORLD_MODEL_IMAGINATIONS, "simulator": SimulatorImagination}
# The options of imagination_kwargs that PolyGRAD handles itself, whatever the method: see ImaginationSetup.
GENERIC_OPTIONS: tuple[str, ...] = ("start_window", "terminations")


def imagination_class(imagination: str | type[Imagination]) -> type[Imagination]:
    """
    :param imagination: a name of ``IMAGINATIONS`` or an ``Imagination`` subclass
    :return: the method's class
    :raises ValueError: for anything else
    """
    if isinstance(imagination, str) and imagination in IMAGINATIONS:
        return IMAGINATIONS[imagination]
    if inspect.isclass(imagination) and issubclass(imagination, Imagination) and not inspect.isabstract(imagination):
        return imagination
    raise ValueError(
        f"imagination must be one of {tuple(IMAGINATIONS)} or a concrete Imagination subclass "
        f"(sb3_polygrad.imagination), got {imagination!r}"
    )


def imagination_options(imagination: str | type[Imagination], imagination_kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """
    :param imagination: a name of ``IMAGINATIONS`` or an ``Imagination`` subclass
    :param imagination_kwargs: its options as given (a method whose options depend on one of them reads it)
    :return: the keys of ``imagination_kwargs`` that the method takes, the generic ones first
    """
    method = imagination_class(imagination)
    return (*GENERIC_OPTIONS, *method.option_names({k: v for k, v in imagination_kwargs.items() if k not in GENERIC_OPTIONS}))


@dataclass(frozen=True)
class ImaginationSetup:
    """
    ``PolyGRAD(imagination=..., imagination_kwargs=...)``, checked: the method, its own options, and the two options
    that PolyGRAD handles for every method.

    :param name: the method as PolyGRAD's ``imagination`` names it
    :param method: the method's class
    :param options: its options, as its ``parse_options`` returns them
    :param start_window: draw imagination's start states from the newest ``start_window`` transitions of the replay
        buffer (counted over all envs, as ``buffer_size``); ``None``: from the whole buffer, as the paper. Not in the
        paper: this package's extension, so that the on-policy actor-critic learns at the states its policy now visits,
        not mostly at those of its early, falling policies, whose large advantages otherwise dominate each step
        (``docs/results.md``). The world model still trains on the whole buffer
    :param terminations: where the imagined trajectories' terminal flags come from: ``"world_model"``, its own
        predictions, as the paper; ``"env_rule"``, the task's known termination rule applied to the imagined states
        (``RuleTerminations``)
    """

    name: str | type[Imagination]
    method: type[Imagination]
    options: Any
    start_window: int | None = None
    terminations: Terminations = "world_model"

    @classmethod
    def parse(cls, imagination: str | type[Imagination], imagination_kwargs: Mapping[str, Any]) -> "ImaginationSetup":
        """
        :param imagination: a name of ``IMAGINATIONS`` or an ``Imagination`` subclass
        :param imagination_kwargs: the generic options and the method's own
        :return: the setup
        :raises ValueError: for an unknown method, an option it does not take (naming those it takes) or a
            ``terminations`` other than ``TERMINATIONS``
        """
        method = imagination_class(imagination)
        taken = imagination_options(method, imagination_kwargs)
        unknown = sorted(set(imagination_kwargs) - set(taken))
        if unknown:
            raise ValueError(f"imagination={imagination!r} takes the imagination_kwargs {list(taken)}; not {unknown}")
        own = {key: value for key, value in imagination_kwargs.items() if key not in GENERIC_OPTIONS}
        terminations = imagination_kwargs.get("terminations", "world_model")
        if terminations not in TERMINATIONS:
            raise ValueError(f"imagination_kwargs['terminations'] must be one of {TERMINATIONS}, got {terminations!r}")
        return cls(imagination, method, method.parse_options(own), imagination_kwargs.get("start_window"), terminations)

    def world_model_kwargs(self, denoiser: str, world_model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """
        :param denoiser: PolyGRAD's ``denoiser``
        :param world_model_kwargs: PolyGRAD's ``world_model_kwargs``
        :return: ``world_model_kwargs`` with those that the method needs (``world_model_needs``)
        :raises ValueError: where the denoiser or ``world_model_kwargs`` contradict what the method needs
        """
        needs = self.method.world_model_needs(self.options)
        if needs.causal_denoiser and not (denoiser in DENOISERS and DENOISERS[denoiser].causal_states):
            raise ValueError(
                f"imagination={self.name!r} samples states from past actions only: it needs denoiser='causal_mlp'"
            )
        for key, value in needs.world_model_kwargs.items():
            if key in world_model_kwargs and world_model_kwargs[key] != value:
                raise ValueError(
                    f"imagination={self.name!r} sets world_model_kwargs[{key!r}] to {value!r} (from its options, "
                    f"imagination_kwargs), got {world_model_kwargs[key]!r}"
                )
        return {**world_model_kwargs, **needs.world_model_kwargs}

    def build(self, algo: "PolyGRAD") -> Imagination:
        """
        :param algo: the algorithm, its world model and policy built
        :return: the method, wrapped in ``RuleTerminations`` if ``terminations="env_rule"``, shown the algorithm's env
        """
        imagination = self.method.from_algorithm(algo, self.options)
        if self.terminations == "env_rule":
            imagination = RuleTerminations(imagination)
        imagination.set_env(algo.env)
        return imagination
