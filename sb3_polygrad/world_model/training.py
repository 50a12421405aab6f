"""One optimiser step of a diffusion world model on real windows: the update that PolyGRAD and the world-model study share."""

import torch as th

from sb3_polygrad.world_model.types import WindowSamples
from sb3_polygrad.world_model.world_model import DiffusionWorldModel


def world_model_update(world_model: DiffusionWorldModel, optimizer: th.optim.Optimizer, batch: WindowSamples) -> float:
    """
    One denoiser update: the denoising loss on ``batch``, a gradient step of ``optimizer``, then the EMA update.

    The EMA step counts every optimiser step, so it must follow each one: the imagining copy of the denoiser is updated
    on the reference's cadence (section 1.2), which a skipped call would shift.

    :param world_model: the world model to train (its ``denoiser`` holds the parameters of ``optimizer``)
    :param optimizer: the denoiser's optimiser
    :param batch: real windows in raw units
    :return: the loss before the step
    """
    loss, _ = world_model.loss(batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    world_model.step_ema()
    return loss.item()
