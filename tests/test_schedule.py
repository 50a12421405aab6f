import pytest
import torch as th

from sb3_polygrad.world_model.schedule import SAMPLING_COEFFICIENTS, DiffusionSchedule, cosine_tau_betas


@pytest.mark.parametrize(
    "tau, golden",
    [
        # alpha_bar at j = 0, 10, 32, 64, 96, 120, 127: the table of docs/method.md section 1.3 (numpy evaluation)
        (1.0, [0.9998, 0.982, 0.845, 0.488, 0.138, 0.0074, 1.5e-7]),
        (0.1, [1.0000, 0.998, 0.983, 0.931, 0.820, 0.612, 4.1e-4]),
    ],
)
def test_alphas_cumprod_golden(tau, golden):
    ab = DiffusionSchedule(128, tau).alphas_cumprod
    for j, value in zip([0, 10, 32, 64, 96, 120, 127], golden, strict=True):
        assert ab[j].item() == pytest.approx(value, rel=0.02, abs=2e-4)


def test_schedule_monotone_and_clipped():
    betas = cosine_tau_betas(128, 1.0)
    assert betas[-1].item() == pytest.approx(0.999)
    ab = DiffusionSchedule(128, 1.0).alphas_cumprod
    assert (ab[1:] < ab[:-1]).all()


def test_posterior_at_last_step_returns_x0():
    sched = DiffusionSchedule(16, 1.0)
    x0, x_t = th.randn(3, 4, 5), th.randn(3, 4, 5)
    # At t = 0 the posterior mean is x0 (alpha_bar_prev = 1): DDPM's last step returns the prediction.
    *_, coef_x0, coef_xt, _ = sched.sampling_coefficients[-1]
    assert th.allclose(sched.q_posterior_mean(x0, x_t, coef_x0, coef_xt), x0, atol=1e-6)


def test_strided_schedule_matches_full_when_not_strided():
    full = DiffusionSchedule(32, 1.0)
    assert th.equal(full.sampling_timesteps, th.arange(31, -1, -1))
    strided = DiffusionSchedule(32, 1.0, n_sampling_steps=8)
    assert strided.sampling_timesteps[0] == 31 and strided.sampling_timesteps[-1] == 0
    # A strided step's posterior is the DDPM posterior of the compound step: its coefficients are those of
    # q(x_prev | x_t, x0) for alpha = alpha_bar_t / alpha_bar_prev.
    k = 3
    t, t_prev = strided.sampling_timesteps[k], strided.sampling_timesteps[k + 1]
    ab_t, ab_prev = full.alphas_cumprod[t].double(), full.alphas_cumprod[t_prev].double()
    beta = 1 - ab_t / ab_prev
    coef_x0 = strided.sampling_coefficients[k, SAMPLING_COEFFICIENTS.index("coef_x0")].item()
    assert coef_x0 == pytest.approx((beta * ab_prev.sqrt() / (1 - ab_t)).item(), rel=1e-5)


def test_q_sample_noise_levels():
    sched = DiffusionSchedule(128, 1.0)
    x0 = th.ones(2000, 3)
    t = th.full((2000,), 64)
    x_t = sched.q_sample(x0, t, th.randn_like(x0))
    assert x_t.mean().item() == pytest.approx(sched.sqrt_alphas_cumprod[64].item(), abs=0.05)
    assert x_t.std().item() == pytest.approx(sched.sqrt_one_minus_alphas_cumprod[64].item(), abs=0.05)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="n_sampling_steps"):
        DiffusionSchedule(8, 1.0, n_sampling_steps=9)
    with pytest.raises(ValueError, match="tau"):
        DiffusionSchedule(8, 0.0)
