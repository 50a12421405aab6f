import pytest
import torch as th
import torch.nn.functional as F

from sb3_polygrad.world_model.causal_mlp import CausalResidualMLPDenoiser, DegreeLayerNorm
from sb3_polygrad.world_model.world_model import DiffusionWorldModel

OBS, ACT, H = 3, 2, 4
D = OBS + 2


def jacobians() -> tuple[th.Tensor, th.Tensor]:
    """d output / d noisy transitions (H, D, H, D) and d output / d actions (H, D, H, A) of one sample."""
    th.manual_seed(0)
    model = CausalResidualMLPDenoiser(D, ACT, H, hidden_dim=32, num_layers=2, embed_dim=16)
    # Random affine parameters in the norms too, so that no path is hidden by a zero or a one.
    for p in model.parameters():
        p.data.normal_()
    x, a, t = th.randn(1, H, D), th.randn(1, H, ACT), th.tensor([3])
    jx = th.autograd.functional.jacobian(lambda x_: model(x_, a, t), x)[0, :, :, 0]
    ja = th.autograd.functional.jacobian(lambda a_: model(x, a_, t), a)[0, :, :, 0]
    return jx, ja


def test_outputs_see_only_the_past():
    jx, ja = jacobians()
    for k in range(H):
        for j in range(H):
            # state of row k: states of rows <= k; rewards, terminals and actions of rows < k
            assert (jx[k, :OBS, j, :OBS].abs().sum() > 0) == (j <= k)
            assert (jx[k, :OBS, j, OBS:].abs().sum() > 0) == (j < k)
            assert (ja[k, :OBS, j].abs().sum() > 0) == (j < k)
            # reward and terminal of row k (the outcome of action k): one step further
            assert (jx[k, OBS:, j, :OBS].abs().sum() > 0) == (j <= k + 1)
            assert (jx[k, OBS:, j, OBS:].abs().sum() > 0) == (j <= k)
            assert (ja[k, OBS:, j].abs().sum() > 0) == (j <= k)


@pytest.mark.parametrize("width", [11, 12, 25])  # as many units as degrees; one extra; a ragged last row
def test_degree_layer_norm_is_a_layer_norm_over_each_degree(width):
    th.manual_seed(0)
    norm = DegreeLayerNorm(width, 11)
    for p in norm.parameters():
        p.data.normal_()
    h = th.randn(2, 3, width) * 4 + 2
    out = norm(h)
    for g in range(11):
        units = th.arange(g, width, 11)
        expected = F.layer_norm(h[..., units], (len(units),), norm.weight[units], norm.bias[units])
        th.testing.assert_close(out[..., units], expected)


@pytest.mark.parametrize("width", [11, 25, 64])  # one unit per degree; ragged; wide
def test_sampling_the_first_rows_is_denoise_on_those_rows(width):
    th.manual_seed(0)
    horizon = 10
    model = CausalResidualMLPDenoiser(D, ACT, horizon, hidden_dim=width, num_layers=2, embed_dim=16)
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    x, a, t = th.randn(4, horizon, D), th.randn(4, horizon, ACT), th.randint(0, 16, (3, horizon))
    conditionings, shared = model.prepare_sampling(t)
    for k in range(len(t)):
        expected = model(x, a, t[k].expand(4, horizon))
        for rows in range(1, horizon + 1):
            out = model.denoise_sampling(x, a, conditionings[k : k + 1], shared, rows)
            th.testing.assert_close(out[:, :rows], expected[:, :rows], atol=1e-5, rtol=1e-5)
            assert not out[:, rows:].any()  # rows not computed are left at zero
    with pytest.raises(ValueError, match="rows must be in"):
        model.denoise_sampling(x, a, conditionings[:1], shared, horizon + 1)


def test_too_narrow_is_a_clear_error():
    with pytest.raises(ValueError, match="horizon \\+ 1"):
        CausalResidualMLPDenoiser(D, ACT, 10, hidden_dim=8)


def test_world_model_trains_and_imagines_with_it():
    th.manual_seed(0)
    model = DiffusionWorldModel(OBS, ACT, H, n_diffusion_steps=4, denoiser="causal_mlp",
                                denoiser_kwargs=dict(hidden_dim=16, num_layers=1, embed_dim=16))  # fmt: skip
    assert isinstance(model.denoiser, CausalResidualMLPDenoiser)
    traj = model.sample_with_actions(th.randn(5, OBS), th.randn(5, H, ACT))
    assert traj.observations.shape == (5, H, OBS) and th.isfinite(traj.observations).all()


class LinearTanhPolicy:
    """A fixed Gaussian policy, mean tanh(W s), std 0.3: the sampler's GuidancePolicy protocol."""

    def __init__(self) -> None:
        self.weight = th.randn(OBS, ACT, generator=th.Generator().manual_seed(1))

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        mean = th.tanh(observations @ self.weight)
        return mean, th.full_like(mean, 0.3)


def test_sequential_imagination_reaches_its_fixed_point():
    th.manual_seed(0)
    model = DiffusionWorldModel(OBS, ACT, H, n_diffusion_steps=4, denoiser="causal_mlp",
                                denoiser_kwargs=dict(hidden_dim=16, num_layers=1, embed_dim=16))  # fmt: skip
    for p in model.ema_denoiser.parameters():  # an untrained but non-trivial denoiser: every path carries signal
        p.data.normal_(std=0.5)
    policy, obs0 = LinearTanhPolicy(), th.randn(6, OBS)
    traj = model.imagine_sequential(obs0, policy, generator=th.Generator().manual_seed(0))
    assert traj.observations.shape == (6, H, OBS) and th.equal(traj.observations[:, 0], obs0)

    # Replay the generator's draws (z, then the seed of every pass's noise) and take one more pass from the result: the
    # actions drawn at the returned states and the states sampled from them are the returned ones (the last action,
    # drawn at the previous pass's state, moves nothing).
    replay = th.Generator().manual_seed(0)
    z = th.randn(traj.actions.shape, generator=replay)
    seed = int(th.randint(2**62, (), generator=replay))
    mean, std = policy.action_distribution_params(traj.observations)
    th.testing.assert_close(traj.actions[:, :-1], (mean + std * z)[:, :-1])
    again = model.sample_with_actions(obs0, mean + std * z, generator=th.Generator().manual_seed(seed))
    th.testing.assert_close(again.observations, traj.observations)


def test_sequential_imagination_needs_a_causal_denoiser():
    model = DiffusionWorldModel(OBS, ACT, H, n_diffusion_steps=4, denoiser_kwargs=dict(hidden_dim=16, num_layers=1))
    with pytest.raises(ValueError, match="causal_mlp"):
        model.imagine_sequential(th.randn(2, OBS), LinearTanhPolicy())


def test_sampling_reuses_the_masked_weights_until_the_weights_change():
    th.manual_seed(0)
    model = CausalResidualMLPDenoiser(D, ACT, H, hidden_dim=32, num_layers=2, embed_dim=16)
    layer = model.blocks[0].linear
    with th.no_grad():
        first = layer.masked_weight()
        assert layer.masked_weight() is first  # kept while the weights stay
        x, a, t = th.randn(8, H, D), th.randn(8, H, ACT), th.full((8,), 3)
        before = model(x, a, t)
        layer.weight.add_(1.0)  # an in-place change, as an optimiser step or an EMA update makes
        assert th.equal(layer.masked_weight(), layer.weight * layer.mask)
        assert not th.equal(model(x, a, t), before)
    # With autograd, every call builds the product, so that gradients reach the weight.
    model(x, a, t).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
