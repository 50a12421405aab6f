import gymnasium as gym
import numpy as np
import pytest
import torch as th
from torch.nn import functional as F

from sb3_polygrad.world_model.denoisers import RandomFourierTimeEmbedding
from sb3_polygrad.world_model.sampler import inpaint
from sb3_polygrad.world_model.training import world_model_update
from sb3_polygrad.world_model.types import WindowSamples
from sb3_polygrad.world_model.world_model import DiffusionWorldModel


def pendulum_windows(n_episodes: int = 40, horizon: int = 2, seed: int = 0) -> WindowSamples:
    """All ``horizon``-step windows of random-action Pendulum-v1 episodes (no terminations, so no padding)."""
    env = gym.make("Pendulum-v1")
    env.action_space.seed(seed)
    obs_l, act_l, rew_l = [], [], []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed + ep)
        observations, actions, rewards = [obs], [], []
        done = False
        while not done:
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action / 2.0)  # SB3's scaled units
            rewards.append(reward)
            done = terminated or truncated
        for k in range(len(actions) - horizon + 1):
            obs_l.append(observations[k : k + horizon])
            act_l.append(actions[k : k + horizon])
            rew_l.append(rewards[k : k + horizon])
    obs_t = th.as_tensor(np.array(obs_l), dtype=th.float32)
    return WindowSamples(
        obs_t,
        th.as_tensor(np.array(act_l), dtype=th.float32),
        th.as_tensor(np.array(rew_l), dtype=th.float32),
        th.zeros(obs_t.shape[:2]),
    )


def small_model(horizon: int = 2, **kwargs) -> DiffusionWorldModel:
    return DiffusionWorldModel(
        3, 1, horizon=horizon, n_diffusion_steps=16, ema_start=0, ema_update_every=1,
        denoiser_kwargs=dict(hidden_dim=128, num_layers=2), **kwargs,
    )  # fmt: skip


def test_trained_denoiser_beats_copying_the_start_state():
    th.manual_seed(0)
    np.random.seed(0)
    data = pendulum_windows()
    model = small_model(ema_decay=0.0)  # EMA = online weights: this test is about the denoiser
    n = data.observations.shape[0]
    model.normalizer.update(data.observations[:, 0], data.actions[:, 0], data.rewards[:, 0], data.terminals[:, 0])
    optimizer = th.optim.Adam(model.denoiser.parameters(), lr=1e-3)
    for _ in range(1500):
        idx = th.randint(0, n, (128,))
        world_model_update(model, optimizer, WindowSamples(*(x[idx] for x in data[:4])))
    test = pendulum_windows(n_episodes=3, seed=1000)
    pred = model.sample_with_actions(test.observations[:, 0], test.actions, generator=th.Generator().manual_seed(0))
    mse = (pred.observations[:, 1] - test.observations[:, 1]).square().mean().item()
    copy_baseline = (test.observations[:, 0] - test.observations[:, 1]).square().mean().item()
    assert mse < copy_baseline / 4, (mse, copy_baseline)
    reward_mse = (pred.rewards[:, 0] - test.rewards[:, 0]).square().mean().item()
    assert reward_mse < test.rewards[:, 0].var().item() / 4

    # Strided sampling needs no retraining: the same weights sampled with 4 of the 16 steps still predict well.
    model.set_n_sampling_steps(4)
    assert model.sampler.schedule is model.schedule and len(model.schedule.sampling_t) == 4
    pred = model.sample_with_actions(test.observations[:, 0], test.actions, generator=th.Generator().manual_seed(0))
    strided_mse = (pred.observations[:, 1] - test.observations[:, 1]).square().mean().item()
    assert strided_mse < copy_baseline / 4, (strided_mse, copy_baseline)


class StateDependentPolicy:
    """A Gaussian policy in scaled action units whose mean follows the first state dimension."""

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        mean = th.tanh(observations[..., :1])
        return mean, th.full_like(mean, 0.5)


@pytest.mark.parametrize(
    "denoiser, kwargs",
    [("mlp", dict(hidden_dim=16, num_layers=1)), ("transformer", dict(d_model=16, n_layers=1, n_heads=2))],
)
def test_loss_and_imagine_shapes_for_both_denoisers(denoiser, kwargs):
    th.manual_seed(0)
    model = DiffusionWorldModel(3, 1, horizon=5, denoiser=denoiser, n_diffusion_steps=4, denoiser_kwargs=kwargs)
    batch = WindowSamples(th.randn(6, 5, 3), th.randn(6, 5, 1), th.randn(6, 5), th.zeros(6, 5))
    loss, info = model.loss(batch)
    assert loss.dim() == 0 and info["world_model_loss"] == loss.item()
    loss.backward()
    assert all(p.grad is not None for p in model.denoiser.parameters())

    obs0 = th.randn(7, 3)
    trajectory = model.imagine(obs0, StateDependentPolicy(), guidance_scale=0.01)
    assert trajectory.observations.shape == (7, 5, 3) and trajectory.actions.shape == (7, 5, 1)
    assert trajectory.rewards.shape == (7, 5) and trajectory.dones.shape == (7, 5)
    assert th.equal(trajectory.observations[:, 0], obs0)  # the start state is exact, not a sample
    assert set(trajectory.dones.unique().tolist()) <= {0.0, 1.0}
    assert all(th.isfinite(x).all() for x in (trajectory.observations, trajectory.actions, trajectory.rewards))


def test_epsilon_prediction_trains():
    th.manual_seed(0)
    data = pendulum_windows(n_episodes=10)
    model = small_model(predict_epsilon=True)
    model.normalizer.update(data.observations[:, 0], data.actions[:, 0], data.rewards[:, 0], data.terminals[:, 0])
    batch = WindowSamples(*(x[:256] for x in data[:4]))

    # The loss is the MSE between the network's output and the noise that made x_t (with the start state inpainted).
    th.manual_seed(1)
    loss, _ = model.loss(batch)
    th.manual_seed(1)
    x0 = model.normalizer.pack(batch.observations, batch.rewards, batch.terminals)
    t = th.randint(0, model.schedule.n_diffusion_steps, (x0.shape[0],))
    noise = th.randn_like(x0)
    x_t = inpaint(model.schedule.q_sample(x0, t, noise), x0[:, 0, :3])
    actions = model.normalizer.actions.normalize(batch.actions)
    out = model.denoiser(x_t, model.schedule.q_sample(actions, t, th.zeros_like(actions)), t)
    th.testing.assert_close(loss, F.mse_loss(inpaint(out, noise[:, 0, :3]), noise))

    # Training steps on it learn to predict the noise: the loss falls well below its start.
    optimizer = th.optim.Adam(model.denoiser.parameters(), lr=1e-3)
    losses = [world_model_update(model, optimizer, batch) for _ in range(300)]
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) / 5, (losses[:20], losses[-20:])
    assert int(model.n_updates) == 300


def test_bad_input_is_rejected_at_the_boundary():
    with pytest.raises(ValueError, match="horizon"):
        DiffusionWorldModel(3, 1, horizon=1)
    model = small_model()
    good = WindowSamples(th.randn(4, 2, 3), th.randn(4, 2, 1), th.randn(4, 2), th.zeros(4, 2))
    with pytest.raises(ValueError, match="horizon 3"):
        model.loss(WindowSamples(th.randn(4, 3, 3), th.randn(4, 3, 1), th.randn(4, 3), th.zeros(4, 3)))
    with pytest.raises(ValueError, match="actions has shape"):
        model.loss(good._replace(actions=th.randn(4, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        model.loss(good._replace(rewards=th.tensor([[0.0, float("nan")]] * 4)))
    with pytest.raises(ValueError, match="start states"):
        model.sample_with_actions(th.randn(4, 5), th.randn(4, 2, 1))
    with pytest.raises(ValueError, match="NaN"):
        model.sample_with_actions(th.full((4, 3), float("nan")), th.randn(4, 2, 1))
    with pytest.raises(ValueError, match="denoiser"):
        DiffusionWorldModel(3, 1, denoiser="unet")  # type: ignore[arg-type]


def test_the_step_embedding_of_a_batch_is_each_steps_own_and_trains():
    """The embedding MLP runs once per distinct step: the same values, and the same gradients, as one step at a time."""
    th.manual_seed(0)
    embedding = RandomFourierTimeEmbedding(16)
    t = th.randint(0, 8, (5, 4))
    batch = embedding(t)
    assert batch.shape == (5, 4, 16)
    one_by_one = th.stack([embedding(step.reshape(1))[0] for step in t.flatten()]).reshape(5, 4, 16)
    th.testing.assert_close(batch, one_by_one)
    batch.square().sum().backward()
    grads = [p.grad.clone() for p in embedding.parameters() if p.grad is not None]
    embedding.zero_grad()
    one_by_one = th.stack([embedding(step.reshape(1))[0] for step in t.flatten()])
    one_by_one.square().sum().backward()
    assert len(grads) == 4
    for grad, param in zip(grads, [p for p in embedding.parameters() if p.grad is not None], strict=True):
        th.testing.assert_close(grad, param.grad)
