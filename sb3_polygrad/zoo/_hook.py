"""
Start-up hook that makes ``polygrad`` an algorithm of the unchanged RL Zoo commands (``python -m rl_zoo3.train``, ``enjoy``).

The zoo builds its ``--algo`` choices from ``rl_zoo3.utils.ALGOS`` before it imports anything of the user's, so the
registration has to happen when the zoo itself is imported. ``sb3_polygrad_zoo.pth`` (written next to the installed package
by ``setup.py``) loads this file *by path* at every interpreter start, so that ``sb3_polygrad/__init__`` (torch, SB3) is not
imported, and calls :func:`install`. That only puts a finder on ``sys.meta_path``; this file imports nothing but the standard
library. The heavy registration (:mod:`sb3_polygrad.zoo.registration`) runs right after one of the zoo modules in
``HOOKED_MODULES`` has been executed, i.e. only in processes that import the zoo, which has imported torch by then.

Any failure is turned into a warning: it can break neither the interpreter start nor the zoo's other algorithms. Set
``SB3_POLYGRAD_NO_ZOO_HOOK=1`` to switch the hook off (then use ``python -m sb3_polygrad.train``).
"""

import os
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

OPT_OUT_ENV_VAR = "SB3_POLYGRAD_NO_ZOO_HOOK"
HOOKED_MODULES = ("rl_zoo3.utils", "rl_zoo3.hyperparams_opt", "rl_zoo3.exp_manager")
# Identifies the finder by attribute, not by class: the .pth loads this file under its own name, and an ordinary
# ``import sb3_polygrad.zoo._hook`` would make a second class object.
_FINDER_MARKER = "is_sb3_polygrad_zoo_finder"


def _warn_failure(what: str, error: BaseException) -> None:
    warnings.warn(
        f"sb3-polygrad could not {what} ({error!r}); the other RL Zoo algorithms are unaffected. "
        f"Use `python -m sb3_polygrad.train` instead, or set {OPT_OUT_ENV_VAR}=1 to switch the hook off.",
        RuntimeWarning,
        stacklevel=2,
    )


def register_module(name: str, module: ModuleType) -> None:
    """
    Add PolyGRAD to the zoo module ``name`` that has just been executed; never raises.

    :param name: one of ``HOOKED_MODULES``
    :param module: the executed module
    """
    try:
        # Deferred: this is the first import of torch/SB3 that the hook causes, and it only happens inside the zoo.
        from sb3_polygrad.zoo import registration

        if name == "rl_zoo3.utils":
            registration.register_algo(module.ALGOS)
        elif name == "rl_zoo3.hyperparams_opt":
            registration.register_sampler(module.HYPERPARAMS_SAMPLER, module.HYPERPARAMS_CONVERTER)
        elif name == "rl_zoo3.exp_manager":
            registration.use_packaged_hyperparams(module.ExperimentManager)
    except Exception as error:  # a broken registration must not break the zoo's import
        _warn_failure(f"register 'polygrad' with {name}", error)


class _RegisteringLoader:
    """
    Proxy of a zoo module's loader that calls :func:`register_module` after the real ``exec_module``.

    A proxy rather than a patched loader: some loaders (``zipimporter``) are shared by many modules.

    :param loader: the loader found by the other finders
    :param name: the module's name
    """

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        """
        :param spec: the module's spec
        :return: what the real loader creates (``None``: the default module)
        """
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        """
        Execute the zoo module (its own errors propagate unchanged), then register PolyGRAD in it.

        :param module: the module to execute
        """
        self._loader.exec_module(module)
        register_module(self._name, module)

    def __getattr__(self, attribute: str) -> Any:
        # get_source, get_code, get_resource_reader, ...: tracebacks, inspect and importlib.resources keep working.
        return getattr(self._loader, attribute)


class ZooFinder:
    """Meta-path finder that matches only ``HOOKED_MODULES`` and wraps the loader of the spec the other finders find."""

    is_sb3_polygrad_zoo_finder = True

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> ModuleSpec | None:
        """
        :param fullname: the module being imported
        :param path: the parent package's ``__path__`` (``None`` for a top-level module)
        :param target: the module object of a reload
        :return: the real spec with a registering loader for a hooked module, else ``None`` (not ours)
        """
        if fullname not in HOOKED_MODULES:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if getattr(finder, _FINDER_MARKER, False) or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader, fullname)
                return spec
        return None


def install() -> None:
    """
    Put the finder first on ``sys.meta_path`` (once), unless the opt-out variable is set; never raises.

    Zoo modules imported before this call are registered at once.
    """
    try:
        if os.environ.get(OPT_OUT_ENV_VAR, "") not in ("", "0"):
            return
        if any(getattr(finder, _FINDER_MARKER, False) for finder in sys.meta_path):
            return
        for name in HOOKED_MODULES:
            if name in sys.modules:
                register_module(name, sys.modules[name])
        sys.meta_path.insert(0, ZooFinder())
    except Exception as error:  # this runs at interpreter start: never let it fail
        _warn_failure("install its RL Zoo import hook", error)
