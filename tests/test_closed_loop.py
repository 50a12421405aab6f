"""Closed-loop imagination: exact on a world model that is the true dynamics, causal, deterministic, saved and loaded."""

import pytest
import torch as th

from sb3_polygrad import PolyGRAD
from sb3_polygrad.world_model.causal_mlp import CausalResidualMLPDenoiser
from sb3_polygrad.world_model.closed_loop_sampler import ClosedLoopSampler, staggered_steps
from sb3_polygrad.world_model.denoisers import Denoiser
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.sampler import standardized_action_stats
from sb3_polygrad.world_model.schedule import DiffusionSchedule
from sb3_polygrad.world_model.types import ImaginedTrajectory

OBS_DIM, ACT_DIM, H, BATCH = 3, 2, 6, 512
GEN = th.Generator().manual_seed(7)
A_MATRIX = 0.9 * th.linalg.qr(th.randn(OBS_DIM, OBS_DIM, generator=GEN))[0]  # a stable rotation
B_MATRIX = th.randn(OBS_DIM, ACT_DIM, generator=GEN)


class LinearPolicy:
    """mean = tanh(s W), std depending on the state: a policy whose samples the test can recompute."""

    weight = th.randn(OBS_DIM, ACT_DIM, generator=GEN)

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        mean = th.tanh(observations @ self.weight)
        return mean, 0.2 + 0.1 * th.sigmoid(observations[..., :ACT_DIM])


class TrueDynamicsDenoiser(Denoiser):
    """The exact clean window given the start state and the actions, of ``s' = A s + B a``, reward ``sum(s)``: a world
    model with no error. It reads each row's diffusion step to undo the ``sqrt(alpha_bar)`` scale of its action."""

    causal_states = True
    supports_per_row_noise = True

    def __init__(self, schedule: DiffusionSchedule) -> None:
        super().__init__(OBS_DIM + 2, ACT_DIM, H)
        self.schedule = schedule

    def embed_time(self, t: th.Tensor) -> th.Tensor:
        return t.double()  # carried through exactly as the step index

    def denoise(self, x_t: th.Tensor, actions: th.Tensor, time_embedding: th.Tensor | None) -> th.Tensor:
        assert time_embedding is not None
        actions = actions / self.schedule.sqrt_alphas_cumprod[time_embedding.long()][..., None]
        state, rows = x_t[:, 0, :OBS_DIM], []
        for k in range(H):
            rows.append(th.cat([state, state.sum(-1, keepdim=True), th.zeros_like(state[:, :1])], dim=-1))
            state = state @ A_MATRIX.T + actions[:, k] @ B_MATRIX.T
        return th.stack(rows, dim=1)


def closed_loop(
    row_lag: float, n_steps: int, seed: int = 0, denoiser: Denoiser | None = None
) -> tuple[th.Tensor, ImaginedTrajectory]:
    """A closed-loop pass of the linear system's true-dynamics denoiser (or of ``denoiser``) with the linear policy."""
    schedule = DiffusionSchedule(16, 1.0, n_steps)
    sampler = ClosedLoopSampler(row_lag=row_lag, state_change_clip=None)
    normalizer = TransitionNormalizer(OBS_DIM, ACT_DIM)  # fresh statistics: the identity up to 1e-6
    obs0 = th.randn(BATCH, OBS_DIM, generator=th.Generator().manual_seed(100))
    denoiser = denoiser or TrueDynamicsDenoiser(schedule)
    x, actions = sampler.sample(schedule, denoiser, normalizer, obs0, H, LinearPolicy(), th.Generator().manual_seed(seed))
    obs, rewards, terminals = normalizer.unpack(x)
    return obs0, ImaginedTrajectory(obs, normalizer.actions.unnormalize(actions), rewards, terminals)


def dynamics_error(trajectory: ImaginedTrajectory) -> float:
    predicted = trajectory.observations[:, :-1] @ A_MATRIX.T + trajectory.actions[:, :-1] @ B_MATRIX.T
    return (predicted - trajectory.observations[:, 1:]).abs().max().item()


def test_staggered_steps_lag_each_row_and_finish_every_row():
    steps = staggered_steps(4, 3, 1.0)
    assert steps.shape == (4 + 2, 3)
    assert steps[:, 0].tolist() == [0, 1, 2, 3, 4, 4]
    assert steps[:, 2].tolist() == [-1, -1, 0, 1, 2, 3]
    assert steps[-1].tolist() == [4, 4, 3] and staggered_steps(4, 3, 0.0).shape == (4, 3)  # the last row ends last
    with pytest.raises(ValueError, match="row_lag"):
        staggered_steps(4, 3, -1.0)


def assert_actions_are_policy_samples_at_the_states(obs0: th.Tensor, trajectory: ImaginedTrajectory) -> None:
    # The noise the sampler drew, in its order: the initial window, then the per-trajectory action noise.
    gen = th.Generator().manual_seed(0)
    th.randn((BATCH, H, OBS_DIM + 2), generator=gen)
    eps = th.randn((BATCH, H, ACT_DIM), generator=gen)
    mean, std = LinearPolicy().action_distribution_params(trajectory.observations)
    assert th.allclose(trajectory.actions, mean + std * eps, atol=1e-4)
    assert th.allclose(trajectory.observations[:, 0], obs0, atol=1e-5)
    action_std, action_bias = standardized_action_stats(LinearPolicy(), trajectory)
    assert abs(action_std - 1.0) < 0.05 and abs(action_bias) < 0.05


def test_with_the_true_dynamics_actions_are_exact_policy_samples_at_the_imagined_states():
    assert_actions_are_policy_samples_at_the_states(*closed_loop(row_lag=1.0, n_steps=3))


@pytest.mark.parametrize("row_lag", [0.0, 0.5, 2.0])
def test_with_any_denoiser_each_action_is_the_policy_sample_at_its_final_state(row_lag):
    """An untrained causal MLP: the states are wrong, but each action is still drawn at the state it is returned with
    (the action of a row that has just finished is re-drawn at its final state, not at the last prediction of it)."""
    th.manual_seed(0)
    denoiser = CausalResidualMLPDenoiser(OBS_DIM + 2, ACT_DIM, H, hidden_dim=32, num_layers=2, embed_dim=16)
    assert_actions_are_policy_samples_at_the_states(*closed_loop(row_lag, n_steps=4, denoiser=denoiser))


def test_the_rows_read_are_those_denoised_and_the_next_to_start():
    steps = staggered_steps(2, 4, 1.0)  # rows start at iterations 0, 1, 2, 3 and take 2 steps each
    refresh = ClosedLoopSampler._rows_to_refresh(steps, 2)
    # iteration 0 denoises row 0 and draws row 1's first action at its first guess; from iteration 2 on all rows
    assert ClosedLoopSampler._rows_read(steps, 2, refresh) == [2, 3, 4, 4, 4]
    lagged = staggered_steps(2, 3, 4.0)  # rows start at iterations 0, 4, 8: iterations 2 and 6 read no row (1 at least)
    lagged_refresh = ClosedLoopSampler._rows_to_refresh(lagged, 2)
    assert ClosedLoopSampler._rows_read(lagged, 2, lagged_refresh) == [1, 1, 1, 2, 2, 2, 1, 3, 3, 3]


class AllRowsDenoiser(CausalResidualMLPDenoiser):
    """The causal MLP computing every row at every iteration: the sampler's reference."""

    def denoise_sampling(self, x_t, actions, conditioning, shared, rows=None):
        return super().denoise_sampling(x_t, actions, conditioning, shared)


@pytest.mark.parametrize("row_lag", [0.5, 1.0, 2.0, 6.0])  # 6: longer than a row's steps, iterations with no row
def test_computing_only_the_rows_read_samples_what_computing_every_row_does(row_lag):
    """The sampler tells the causal MLP which rows it reads (denoised, or re-drawn after the iteration); a row it
    leaves out that the pass reads, such as the next row's first state guess, would change the actions."""
    th.manual_seed(0)
    denoiser = CausalResidualMLPDenoiser(OBS_DIM + 2, ACT_DIM, H, hidden_dim=32, num_layers=2, embed_dim=16)
    reference = AllRowsDenoiser(OBS_DIM + 2, ACT_DIM, H, hidden_dim=32, num_layers=2, embed_dim=16)
    for p in denoiser.parameters():
        p.data.normal_(0, 0.3)
    reference.load_state_dict(denoiser.state_dict())
    _, sliced = closed_loop(row_lag, n_steps=4, denoiser=denoiser)
    _, full = closed_loop(row_lag, n_steps=4, denoiser=reference)
    assert th.allclose(sliced.observations, full.observations, atol=1e-4)
    assert th.allclose(sliced.actions, full.actions, atol=1e-4)


def test_with_the_true_dynamics_the_states_follow_the_actions_only_when_rows_are_staggered():
    # Three steps per row cannot settle a 6-step window denoised all at once (each step fixes one more row), but a lag
    # of one iteration lets every row finish after the action before it is final.
    assert dynamics_error(closed_loop(row_lag=1.0, n_steps=3)[1]) < 1e-4
    assert dynamics_error(closed_loop(row_lag=0.0, n_steps=3)[1]) > 1e-2
    # With at least H - 1 steps even the unstaggered pass reaches the fixed point of an exact model.
    assert dynamics_error(closed_loop(row_lag=0.0, n_steps=8)[1]) < 1e-4


def test_closed_loop_sampling_is_deterministic_given_a_generator():
    _, first = closed_loop(row_lag=1.0, n_steps=4, seed=3)
    _, again = closed_loop(row_lag=1.0, n_steps=4, seed=3)
    _, other = closed_loop(row_lag=1.0, n_steps=4, seed=4)
    assert th.equal(first.observations, again.observations) and th.equal(first.actions, again.actions)
    assert not th.equal(first.actions, other.actions)


def test_causal_mlp_with_a_noise_level_per_row_never_lets_a_state_see_later_actions_or_levels():
    th.manual_seed(0)
    denoiser = CausalResidualMLPDenoiser(OBS_DIM + 2, ACT_DIM, H, hidden_dim=64, num_layers=2)
    x = th.randn(4, H, OBS_DIM + 2)
    actions = th.randn(4, H, ACT_DIM, requires_grad=True)
    t = th.randint(0, 16, (4, H))
    out = denoiser(x, actions, t)
    for k in range(H):
        (grad,) = th.autograd.grad(out[:, k, :OBS_DIM].sum(), actions, retain_graph=True)
        assert grad[:, k:].abs().max() == 0 and (k == 0 or grad[:, :k].abs().max() > 0)
        later = t.clone()
        later[:, k + 1 :] = (later[:, k + 1 :] + 5) % 16
        changed = denoiser(x, actions, later)
        assert th.equal(changed[:, : k + 1, :OBS_DIM], out[:, : k + 1, :OBS_DIM])
        assert k == H - 1 or not th.equal(changed[:, k + 1 :, :OBS_DIM], out[:, k + 1 :, :OBS_DIM])


def test_one_noise_level_per_row_equals_one_level_for_the_window():
    th.manual_seed(0)
    denoiser = CausalResidualMLPDenoiser(OBS_DIM + 2, ACT_DIM, H, hidden_dim=64, num_layers=2)
    x, actions, t = th.randn(4, H, OBS_DIM + 2), th.randn(4, H, ACT_DIM), th.randint(0, 16, (4,))
    assert th.allclose(denoiser(x, actions, t), denoiser(x, actions, t[:, None].expand(4, H)), atol=1e-6)


def closed_loop_model(tiny_kwargs: dict) -> PolyGRAD:
    return PolyGRAD("MlpPolicy", "Pendulum-v1", imagination="closed_loop", denoiser="causal_mlp", seed=0, **tiny_kwargs)


def test_polygrad_learns_with_closed_loop_imagination_and_logs_on_policy_actions(tiny_kwargs):
    model = closed_loop_model(tiny_kwargs)
    assert model.world_model.per_row_noise
    model.learn(200)
    values = model.logger.name_to_value
    assert model._n_updates > 0
    assert abs(values["train/imagined_action_std"] - 1.0) < 0.2 and abs(values["train/imagined_action_bias"]) < 0.2
    assert "train/guidance_scale" not in values  # no guidance to tune


def test_closed_loop_model_saves_and_loads_its_imagination(tiny_kwargs, tmp_path):
    model = closed_loop_model(tiny_kwargs)
    model.learn(150)
    model.save(tmp_path / "model")
    loaded = PolyGRAD.load(tmp_path / "model")
    assert loaded.imagination == "closed_loop" and loaded.world_model.per_row_noise
    start = model.replay_buffer.sample_windows(16, model.horizon)
    first = model.imaginer.imagine(start, th.Generator().manual_seed(0))
    again = loaded.imaginer.imagine(start, th.Generator().manual_seed(0))
    assert th.equal(first.observations, again.observations) and th.equal(first.actions, again.actions)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(imagination="closed_loop"), "causal_mlp"),
        (dict(imagination="closed_loop", denoiser="causal_mlp", world_model_kwargs=dict(per_row_noise=False)), "per_row"),
        (
            dict(imagination="closed_loop", denoiser="causal_mlp", imagination_kwargs=dict(row_lag=-1.0)),
            r"imagination_kwargs\['row_lag'\] must be",
        ),
        (dict(world_model_kwargs=dict(per_row_noise=True)), "causal_mlp"),
    ],
)
def test_closed_loop_settings_that_cannot_run_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PolyGRAD("MlpPolicy", "Pendulum-v1", **kwargs)
