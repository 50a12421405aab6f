"""Noise schedule of the diffusion world model: the cosine-with-temperature schedule and the DDPM posterior.

Shape letters used in this file: ``B`` batch, ``H`` horizon, ``D`` transition dim.
"""

import math

import torch as th
from torch import nn

SAMPLING_COEFFICIENTS = ("sqrt_alpha_bar", "sqrt_one_minus_alpha_bar", "coef_x0", "coef_xt", "std")
"""The columns of ``DiffusionSchedule.sampling_coefficients``: ``sqrt(alpha_bar_t)`` (the scale of the denoiser's action
input), ``sqrt(1 - alpha_bar_t)`` (to convert a predicted noise), the posterior-mean coefficients of the predicted clean
sample and of the current sample, and the posterior standard deviation (the noise added after the step)."""


def cosine_tau_betas(n_diffusion_steps: int, tau: float = 1.0, max_beta: float = 0.999) -> th.Tensor:
    """
    Betas of the cosine schedule with temperature ``tau`` (Chen 2023, arXiv 2301.10972, start 0, end 1, no offset).

    ``alpha_bar(u) = cos(u * pi / 2) ** (2 * tau)`` for ``u = j / N``; ``tau < 1`` keeps ``alpha_bar`` near 1 for most steps
    (a low-noise schedule, which the paper uses for Hopper).

    :param n_diffusion_steps: number of diffusion steps N
    :param tau: temperature of the schedule
    :param max_beta: upper clip of each beta, so the last step is not singular
    :return: betas, shape (N,), float64
    """
    if n_diffusion_steps < 1:
        raise ValueError(f"n_diffusion_steps must be >= 1, got {n_diffusion_steps}")
    if tau <= 0:
        raise ValueError(f"noise_schedule_tau must be > 0, got {tau}")
    u = th.linspace(0.0, 1.0, n_diffusion_steps + 1, dtype=th.float64)
    alpha_bar = th.cos(u * math.pi / 2).clamp(min=0.0) ** (2 * tau)
    # Rescaled so that alpha_bar(0) = 1 and alpha_bar(1) = 0 exactly: in floating point cos(pi / 2) is 6e-17, whose
    # (2 tau)-th power is not negligible for small tau (5.7e-4 at tau = 0.1).
    alpha_bar = (alpha_bar - alpha_bar[-1]) / (alpha_bar[0] - alpha_bar[-1])
    return (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(0.0, max_beta)


class DiffusionSchedule(nn.Module):
    """
    The fixed coefficients of a DDPM with ``x0``-prediction, and the few formulas that use them.

    Every tensor is derived from the constructor arguments and registered as a non-persistent buffer: ``.to(device)`` moves
    them, and a checkpoint can never disagree with the code. A sampler may use a strided subset of the training steps
    (``sampling_timesteps``); the posterior of a strided step is the DDPM posterior of the compound step
    ``t -> t_prev`` (Nichol & Dhariwal 2021, section 4), so the same formulas serve both.

    :param n_diffusion_steps: number of training diffusion steps N
    :param tau: temperature of the cosine schedule
    :param n_sampling_steps: number of steps the sampler takes, evenly strided over the N training steps
        (``None``: all N steps, exactly the reference's sampler)
    """

    alphas_cumprod: th.Tensor
    sqrt_alphas_cumprod: th.Tensor
    sqrt_one_minus_alphas_cumprod: th.Tensor
    sampling_timesteps: th.Tensor  # training step index of each sampling step, noisiest first
    # One row per sampling step, the columns named by SAMPLING_COEFFICIENTS. Tensors, not Python numbers, so that a
    # compiled sampling step takes them as inputs instead of recompiling for each step's constants.
    sampling_coefficients: th.Tensor

    def __init__(self, n_diffusion_steps: int = 128, tau: float = 1.0, n_sampling_steps: int | None = None) -> None:
        super().__init__()
        n_sampling_steps = n_diffusion_steps if n_sampling_steps is None else n_sampling_steps
        if not 1 <= n_sampling_steps <= n_diffusion_steps:
            raise ValueError(f"n_sampling_steps must be in [1, {n_diffusion_steps}], got {n_sampling_steps}")
        self.n_diffusion_steps = n_diffusion_steps
        self.n_sampling_steps = n_sampling_steps
        self.tau = tau

        betas = cosine_tau_betas(n_diffusion_steps, tau)
        alphas_cumprod = th.cumprod(1.0 - betas, dim=0)
        self._register("alphas_cumprod", alphas_cumprod)
        self._register("sqrt_alphas_cumprod", alphas_cumprod.sqrt())
        self._register("sqrt_one_minus_alphas_cumprod", (1.0 - alphas_cumprod).sqrt())

        # Strided sampling: the last training step is always kept, so sampling starts from (almost) pure noise.
        timesteps = th.linspace(n_diffusion_steps - 1, 0, n_sampling_steps, dtype=th.float64).round().long()
        self.register_buffer("sampling_timesteps", timesteps, persistent=False)
        # Also as Python ints: the sampler branches on them without reading a device tensor (a sync on CUDA).
        self.sampling_t: list[int] = timesteps.tolist()
        ab_t = alphas_cumprod[timesteps]
        ab_prev = th.cat([ab_t[1:], th.ones(1, dtype=th.float64)])  # alpha_bar of the next (less noisy) step
        step_betas = 1.0 - ab_t / ab_prev
        # Posterior q(x_prev | x_t, x0) (DDPM eq. 6-7), "fixed small" variance with log clipped at 1e-20 as the reference.
        variance = step_betas * (1.0 - ab_prev) / (1.0 - ab_t)
        coefficients = th.stack(
            [
                ab_t.sqrt(),
                (1.0 - ab_t).sqrt(),
                step_betas * ab_prev.sqrt() / (1.0 - ab_t),
                (1.0 - ab_prev) * (1.0 - step_betas).sqrt() / (1.0 - ab_t),
                variance.clamp(min=1e-20).sqrt(),
            ],
            dim=1,
        )
        self._register("sampling_coefficients", coefficients)

    def _register(self, name: str, value: th.Tensor) -> None:
        # Computed in float64 for accuracy, stored in float32 like the networks.
        self.register_buffer(name, value.float(), persistent=False)

    def q_sample(self, x0: th.Tensor, t: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """
        Noise clean samples to diffusion step ``t``: ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``.

        :param x0: clean samples, shape (B, ...)
        :param t: training step index of each sample, shape (B,), or of each row of each sample, shape (B, H)
        :param noise: standard Gaussian noise, shape of ``x0``
        :return: noised samples, shape of ``x0``
        """
        shape = (*t.shape, *(1,) * (x0.dim() - t.dim()))
        return self.sqrt_alphas_cumprod[t].view(shape) * x0 + self.sqrt_one_minus_alphas_cumprod[t].view(shape) * noise

    @staticmethod
    def q_posterior_mean(
        x0_hat: th.Tensor, x_t: th.Tensor, coef_x0: th.Tensor | float, coef_xt: th.Tensor | float
    ) -> th.Tensor:
        """
        Mean of ``q(x_prev | x_t, x0_hat)`` at a sampling step.

        :param x0_hat: predicted clean samples, shape (B, H, D)
        :param x_t: current noisy samples, shape (B, H, D)
        :param coef_x0: the step's coefficient of ``x0_hat`` (a column of ``sampling_coefficients``)
        :param coef_xt: the step's coefficient of ``x_t``
        :return: posterior mean, shape (B, H, D)
        """
        return coef_x0 * x0_hat + coef_xt * x_t

    def extra_repr(self) -> str:
        return f"n_diffusion_steps={self.n_diffusion_steps}, n_sampling_steps={self.n_sampling_steps}, tau={self.tau}"
