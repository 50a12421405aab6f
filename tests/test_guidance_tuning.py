import math

import pytest
import torch as th

from sb3_polygrad.baselines import PolyGRADWorldModel
from sb3_polygrad.world_model.guidance_tuning import tune_guidance_scale

OBS, ACT = 4, 2


class FixedStdPolicy:
    """A Gaussian policy with mean 0 and one std everywhere."""

    def __init__(self, std: float) -> None:
        self.std = std

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        mean = observations.new_zeros(*observations.shape[:-1], ACT)
        return mean, th.full_like(mean, self.std)


@pytest.mark.parametrize("action_std, direction", [(1.5, 1.0), (0.5, -1.0), (1.0, 0.0)])
def test_one_sgd_step_on_log_g_toward_a_standardised_std_of_one(action_std, direction):
    log_g = th.tensor(math.log(0.005))
    tune_guidance_scale(log_g, action_std, max_policy_std=1.0, learning_rate=0.1)
    assert log_g.item() == pytest.approx(math.log(0.005) + direction * 0.05)


def test_the_tuner_stops_where_the_sampler_caps_the_step():
    # The sampler's step is at most sigma^2: past g = max sigma^2 guidance cannot grow, so neither may g.
    log_g = th.tensor(math.log(0.005))
    for _ in range(100):
        tune_guidance_scale(log_g, action_std=3.0, max_policy_std=0.05, learning_rate=0.1)
    assert log_g.exp().item() == pytest.approx(0.05**2)
    tune_guidance_scale(log_g, action_std=0.5, max_policy_std=0.05, learning_rate=0.1)  # and it comes back at once
    assert log_g.exp().item() == pytest.approx(0.05**2 * math.exp(-0.05))


def test_the_world_model_study_tunes_with_the_same_cap():
    th.manual_seed(0)
    model = PolyGRADWorldModel(OBS, ACT, horizon=5, world_model_kwargs=dict(n_diffusion_steps=4))
    model.log_guidance_scale.fill_(0.0)  # g = 1, far past sigma^2 = 0.05^2
    info = model.adapt_to_policy(th.randn(16, OBS), FixedStdPolicy(std=0.05))
    assert info["guidance_scale"] == pytest.approx(0.05**2)
