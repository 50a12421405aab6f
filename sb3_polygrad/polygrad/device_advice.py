"""What PolyGRAD checks of the device it is built for: a warning, once per process, for a paper-sized PolyGRAD built
where only a CPU can run it, and an error for compiled imagination on a CPU without a C++ compiler."""

import os
import shutil
import warnings

import torch as th
from torch import nn

# The paper's residual MLP (1024 wide, 6 blocks) has about 8M parameters; the CPU-sized entries have under 1M.
PAPER_SIZED_PARAMETERS = 4_000_000
# Measured by `python -m benchmarks.imagination_speed` (benchmarks/results/imagination_speed.md) for the paper's
# configuration on a 2-core CPU: an upper bound, before the simulator and the actor-critic.
PAPER_CPU_ENV_STEPS_PER_HOUR = 1_552

_warned = False


def warn_if_paper_sized_on_cpu(device: th.device, denoiser: nn.Module) -> None:
    """
    Warn, once per process, that a paper-sized denoiser on a machine without CUDA runs at about
    ``PAPER_CPU_ENV_STEPS_PER_HOUR`` env steps per hour, and point to the CPU-sized entries.

    :param device: the device PolyGRAD runs on
    :param denoiser: the world model's denoiser
    """
    global _warned
    n_parameters = sum(p.numel() for p in denoiser.parameters())
    if _warned or device.type != "cpu" or th.cuda.is_available() or n_parameters < PAPER_SIZED_PARAMETERS:
        return
    _warned = True
    warnings.warn(
        f"PolyGRAD with a paper-sized denoiser ({n_parameters / 1e6:.1f}M parameters) on a CPU: "
        f"benchmarks/imagination_speed.py measured at most about {PAPER_CPU_ENV_STEPS_PER_HOUR:,} env steps per hour "
        "for the paper's configuration on a 2-core CPU, about four weeks per million env steps; it is meant for a GPU. "
        "CPU-sized entries: Hopper, Walker2d and HalfCheetah in hyperparams/polygrad_cpu.yml (python -m rl_zoo3.train "
        "--algo polygrad --env Hopper-v4 -conf sb3_polygrad.zoo.cpu), and small tasks that learn in minutes in "
        "hyperparams/polygrad.yml (--env InvertedPendulum-v4).",
        stacklevel=3,
    )


# What torch.compile's CPU backend (inductor) looks for, in its order: $CXX, then the usual compiler names.
CPU_COMPILERS = ("g++", "clang++", "c++")


def check_compiler(device: th.device, compile_sampler: bool) -> None:
    """
    Raise early, with a clear message, where compiled imagination cannot run: on a CPU, ``torch.compile`` builds C++
    and would otherwise fail at the first imagination, deep inside torch.

    :param device: the device PolyGRAD runs on
    :param compile_sampler: whether the guided sampler is compiled (``imagination_kwargs['compile']``)
    :raises ValueError: compiled imagination on a CPU and no C++ compiler on the PATH
    """
    if not compile_sampler or device.type != "cpu":
        return
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else list(CPU_COMPILERS)
    if not any(shutil.which(name) for name in candidates):
        raise ValueError(
            f"imagination_kwargs['compile']=True on a CPU needs a C++ compiler for torch.compile; none of {candidates} "
            "is on the PATH: install one (for example g++) or leave compile at False"
        )
