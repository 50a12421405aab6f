"""The guidance-scale tuner (section 1.5), shared by PolyGRAD and the world-model study."""

import math

import torch as th


def tune_guidance_scale(
    log_guidance_scale: th.Tensor, action_std: float, max_policy_std: float, learning_rate: float
) -> th.Tensor:
    """
    One SGD step on ``log g`` toward imagined actions of standardised std 1, in place, then the anti-windup cap.

    The loss ``-log g * (std - 1)`` raises g when the imagined actions are wider than the policy's and lowers it when
    they are narrower. The sampler caps each guidance step at ``sigma^2`` (a step that goes no further than the policy
    mean), so a g above the largest ``sigma^2`` changes no sample: the tuner stops there. Without the cap, ``log g``
    winds up while the imagined actions stay too wide, and takes hundreds of updates to come back once less guidance is
    needed.

    :param log_guidance_scale: ``log g``, a 0-d tensor, updated in place
    :param action_std: the standardised std of the last imagined actions (``standardized_action_stats``)
    :param max_policy_std: the policy's largest action std, in the units of the guidance step
    :param learning_rate: SGD rate on ``log g``
    :return: ``log_guidance_scale``
    """
    log_guidance_scale += learning_rate * (action_std - 1.0)
    return log_guidance_scale.clamp_(max=2 * math.log(max_policy_std))
