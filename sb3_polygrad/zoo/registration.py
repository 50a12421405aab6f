"""Register PolyGRAD with the RL Zoo: the ``--algo`` choice, the ``-optimize`` sampler and the packaged hyperparameters."""

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_polygrad.polygrad import PolyGRAD
from sb3_polygrad.zoo.optimize import convert_polygrad_params, sample_polygrad_params

if TYPE_CHECKING:
    from rl_zoo3.exp_manager import ExperimentManager

ALGO_NAME = "polygrad"
# Marks the patched ExperimentManager.__init__: the hook and register() may both run in one process.
_PATCHED_MARKER = "_sb3_polygrad_hyperparams"
# The zoo's samplers: (trial, n_actions, n_envs, additional_args) -> kwargs; its converters: (params) -> kwargs.
SamplerFn = Callable[..., dict[str, Any]]


HyperparamsName = Literal["paper", "cpu"]


def hyperparams_path(entries: HyperparamsName = "paper") -> Path:
    """
    :param entries: ``"paper"``: ``polygrad.yml``, the zoo's default (the paper's configuration, and the small tasks'
        CPU entries); ``"cpu"``: ``polygrad_cpu.yml``, CPU-sized entries of the paper's locomotion tasks
        (``-conf sb3_polygrad.zoo.cpu``)
    :return: that file as shipped inside the package (in a checkout, a symlink to the file in ``hyperparams/``)
    """
    return Path(__file__).with_name({"paper": "polygrad.yml", "cpu": "polygrad_cpu.yml"}[entries])


def register_algo(algos: dict[str, type[BaseAlgorithm]]) -> None:
    """
    Add PolyGRAD to the zoo's algorithm table (``rl_zoo3.utils.ALGOS``, one dict shared by train, enjoy and the manager).

    :param algos: the table to extend; an existing ``polygrad`` entry is kept
    """
    algos.setdefault(ALGO_NAME, PolyGRAD)


def register_sampler(samplers: dict[str, SamplerFn], converters: dict[str, SamplerFn]) -> None:
    """
    Add PolyGRAD's hyperparameter sampler to the zoo's ``-optimize`` tables (``rl_zoo3.hyperparams_opt``).

    :param samplers: ``HYPERPARAMS_SAMPLER``: trial -> constructor keyword arguments
    :param converters: ``HYPERPARAMS_CONVERTER``: a stored trial's params -> keyword arguments (``--trial-id``)
    """
    samplers.setdefault(ALGO_NAME, sample_polygrad_params)
    converters.setdefault(ALGO_NAME, convert_polygrad_params)


def use_packaged_hyperparams(manager_class: type["ExperimentManager"]) -> None:
    """
    Make the zoo's ``ExperimentManager`` read the packaged ``polygrad.yml`` when no ``-conf`` is given.

    The zoo's default is ``rl_zoo3/hyperparams/<algo>.yml``, inside the zoo's own install, where no plugin can ship a file.

    :param manager_class: ``rl_zoo3.exp_manager.ExperimentManager`` (its ``__init__`` takes ``algo`` and ``config``)
    """
    original_init = manager_class.__init__
    if getattr(original_init, _PATCHED_MARKER, False):
        return
    signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        # The zoo uses `config or <default path>`, so an empty value also means "not given".
        if self.algo == ALGO_NAME and not signature.bind(self, *args, **kwargs).arguments.get("config"):
            self.config = str(hyperparams_path())

    setattr(__init__, _PATCHED_MARKER, True)
    manager_class.__init__ = __init__  # type: ignore[method-assign]  # the patch is a method assignment


def register() -> None:
    """Register PolyGRAD with the zoo in this process: what the start-up hook does, for use without it (idempotent)."""
    # Imported here: the start-up hook imports this module while rl_zoo3 itself is still being imported.
    from rl_zoo3 import exp_manager, hyperparams_opt, utils

    register_algo(utils.ALGOS)
    register_sampler(hyperparams_opt.HYPERPARAMS_SAMPLER, hyperparams_opt.HYPERPARAMS_CONVERTER)
    use_packaged_hyperparams(exp_manager.ExperimentManager)
