import copy
import math
import pickle

import pytest
import torch as th

from sb3_polygrad.world_model.causal_mlp import CausalResidualMLPDenoiser
from sb3_polygrad.world_model.denoisers import ResidualMLPDenoiser, TransformerDenoiser
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.sampler import (
    PolicyGuidedSampler,
    gaussian_log_prob_grad,
    standardized_action_stats,
    standardized_action_std,
)
from sb3_polygrad.world_model.schedule import DiffusionSchedule
from sb3_polygrad.world_model.types import ImaginedTrajectory

OBS_DIM, ACT_DIM, H = 3, 2, 5


class FixedGaussianPolicy:
    """mean = tanh(s W), std fixed: a policy the sampler cannot change."""

    def __init__(self, std: float = 0.3) -> None:
        self.weight = th.randn(OBS_DIM, ACT_DIM, generator=th.Generator().manual_seed(1))
        self.std = std

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        mean = th.tanh(observations @ self.weight)
        return mean, th.full_like(mean, self.std)


def make(guidance_type: str = "grad", n_steps: int = 16, **kwargs):
    th.manual_seed(0)
    denoiser = ResidualMLPDenoiser(OBS_DIM + 2, ACT_DIM, H, hidden_dim=32, num_layers=2)
    sampler = PolicyGuidedSampler(DiffusionSchedule(n_steps, 1.0), guidance_type=guidance_type, **kwargs)
    return denoiser, sampler, TransitionNormalizer(OBS_DIM, ACT_DIM)


def imagine(denoiser, sampler, normalizer, policy, g, batch=256, seed=0):
    obs0 = th.randn(batch, OBS_DIM, generator=th.Generator().manual_seed(seed + 100))
    gen = th.Generator().manual_seed(seed)
    x, a = sampler.sample(denoiser, normalizer, obs0, H, policy=policy, guidance_scale=g, generator=gen)
    obs, rew, term = normalizer.unpack(x)
    return obs0, ImaginedTrajectory(obs, normalizer.actions.unnormalize(a), rew, (term > 0.5).float())


@pytest.mark.parametrize("guidance_type", ["grad", "sample", "none"])
@pytest.mark.parametrize("update_states", [False, True])
def test_inpainting_holds_exactly_and_shapes_are_the_same_on_every_branch(guidance_type, update_states):
    denoiser, sampler, normalizer = make(guidance_type, update_states=update_states)
    obs0, traj = imagine(denoiser, sampler, normalizer, FixedGaussianPolicy(), g=0.05, batch=8)
    assert th.equal(traj.observations[:, 0], obs0)  # identity normaliser: exact
    assert traj.observations.shape == (8, H, OBS_DIM) and traj.actions.shape == (8, H, ACT_DIM)
    assert traj.rewards.shape == (8, H) and traj.dones.shape == (8, H)
    assert th.isfinite(traj.actions).all()


def test_guidance_gradient_is_the_gaussian_score():
    mean, std = th.randn(4, ACT_DIM), th.rand(4, ACT_DIM) + 0.1
    actions = th.randn(4, ACT_DIM, requires_grad=True)
    log_prob = th.distributions.Normal(mean, std).log_prob(actions).sum()
    (autograd,) = th.autograd.grad(log_prob, actions)
    assert th.allclose(gaussian_log_prob_grad(actions.detach(), mean, std), autograd, atol=1e-5)


def test_tuned_guidance_makes_actions_on_policy_and_no_guidance_does_not():
    policy = FixedGaussianPolicy(std=0.3)
    denoiser, sampler, normalizer = make("grad")
    # The tuning rule of section 1.5 with a large rate, so it settles in a few dozen rounds.
    log_g, stds = math.log(0.005), []
    for i in range(40):
        _, traj = imagine(denoiser, sampler, normalizer, policy, math.exp(log_g), seed=i)
        stds.append(standardized_action_std(policy, traj))
        log_g += 0.5 * (stds[-1] - 1.0)
    assert stds[0] > 1.5  # too weak at the initial g
    assert abs(sum(stds[-10:]) / 10 - 1.0) < 0.15
    mean, _ = policy.action_distribution_params(traj.observations[:, :-1])
    z = (traj.actions[:, :-1] - mean) / 0.3
    assert abs(z.mean().item()) < 0.2  # centred on the policy mean

    denoiser, sampler, normalizer = make("none")
    _, traj = imagine(denoiser, sampler, normalizer, policy, math.exp(log_g))
    assert standardized_action_std(policy, traj) > 2.0
    mean, _ = policy.action_distribution_params(traj.observations[:, :-1])
    corr = th.corrcoef(th.stack([traj.actions[:, :-1].flatten(), mean.flatten()]))[0, 1]
    assert abs(corr.item()) < 0.2  # the clamp at the end is the only link to the policy


def test_same_seed_same_samples():
    denoiser, sampler, normalizer = make("grad")
    a = imagine(denoiser, sampler, normalizer, FixedGaussianPolicy(), 0.05, seed=3)[1]
    b = imagine(denoiser, sampler, normalizer, FixedGaussianPolicy(), 0.05, seed=3)[1]
    c = imagine(denoiser, sampler, normalizer, FixedGaussianPolicy(), 0.05, seed=4)[1]
    assert th.equal(a.observations, b.observations) and th.equal(a.actions, b.actions)
    assert not th.equal(a.actions, c.actions)


def test_unguided_sampler_is_the_plain_ddpm_loop():
    denoiser, sampler, normalizer = make("none", n_steps=6, state_change_clip=None)
    sched = sampler.schedule
    obs0 = th.randn(4, OBS_DIM)
    actions = th.randn(4, H, ACT_DIM)
    x, a = sampler.sample(denoiser, normalizer, obs0, H, actions=actions, generator=th.Generator().manual_seed(0))
    assert th.equal(a, actions)  # given actions are never changed
    # The same loop written out: x_{t-1} = mu(x0_hat, x_t) + sigma_t eps, inpainting s_0 throughout.
    gen = th.Generator().manual_seed(0)
    ref = th.randn(4, H, OBS_DIM + 2, generator=gen)
    ref[:, 0, :OBS_DIM] = obs0
    n_steps = len(sched.sampling_t)
    steps = zip(sched.sampling_t, sched.sampling_coefficients, strict=True)
    for k, (t, (sqrt_alpha_bar, _, coef_x0, coef_xt, std)) in enumerate(steps):
        with th.no_grad():
            x0 = denoiser(ref, sqrt_alpha_bar * actions, th.full((4,), t))
        x0[:, 0, :OBS_DIM] = obs0
        ref = coef_x0 * x0 + coef_xt * ref
        if k < n_steps - 1:
            ref = ref + std * th.randn(ref.shape, generator=gen)
            ref[:, 0, :OBS_DIM] = obs0
    assert th.allclose(x, ref, atol=1e-6)


@pytest.mark.parametrize("denoiser_cls", [ResidualMLPDenoiser, CausalResidualMLPDenoiser, TransformerDenoiser])
def test_denoise_sampling_is_denoise(denoiser_cls):
    th.manual_seed(0)
    denoiser = denoiser_cls(OBS_DIM + 2, ACT_DIM, H, **({"d_model": 32} if denoiser_cls is TransformerDenoiser else {}))
    for p in denoiser.parameters():  # no zero bias or unit norm weight to hide a term
        p.data.normal_(0, 0.2)
    x, a, t = th.randn(4, H, OBS_DIM + 2), th.randn(4, H, ACT_DIM), th.tensor([0, 3, 7])
    conditioning, shared = denoiser.prepare_sampling(t)
    for k in range(len(t)):
        expected = denoiser(x, a, t[k].expand(4))
        assert th.allclose(denoiser.denoise_sampling(x, a, conditioning[k : k + 1], shared), expected, atol=1e-5)


def test_guided_sampler_is_the_loop_of_section_1_4():
    """The sampler's loop (the step's conditioning hoisted, the input layers folded, the policy evaluated once at the
    start states) against the guided loop written out as the reference runs it."""
    g, n_steps, clip_steps = 0.02, 6, 3
    denoiser, sampler, normalizer = make("grad", n_steps=n_steps, state_change_clip_steps=clip_steps)
    policy, sched = FixedGaussianPolicy(std=0.3), sampler.schedule
    obs0, traj = imagine(denoiser, sampler, normalizer, policy, g, batch=16)
    gen = th.Generator().manual_seed(0)  # the identity normaliser: raw and normalised units coincide
    x = th.randn(16, H, OBS_DIM + 2, generator=gen)
    x[:, 0, :OBS_DIM] = obs0
    a = th.randn(16, H, ACT_DIM, generator=gen)
    steps = list(zip(sched.sampling_t, sched.sampling_coefficients, strict=True))
    for k, (t, (sqrt_alpha_bar, _, coef_x0, coef_xt, std)) in enumerate(steps):
        with th.no_grad():
            x0 = denoiser(x, sqrt_alpha_bar * a, th.full((16,), t))
        x0[:, 0, :OBS_DIM] = obs0
        mean = coef_x0 * x0 + coef_xt * x
        if t < clip_steps:
            mean = x + (mean - x).clamp(-0.25, 0.25)
        mu, sigma = policy.action_distribution_params(x0[..., :OBS_DIM])
        a = th.minimum(th.maximum(a, mu - 3 * sigma), mu + 3 * sigma)
        if k == n_steps - 1:
            x = mean
            break
        a = a + g * (mu - a) / sigma**2 + std * th.randn(a.shape, generator=gen)
        x = mean + std * th.randn(x.shape, generator=gen)
        x[:, 0, :OBS_DIM] = obs0
    assert th.allclose(traj.observations, x[..., :OBS_DIM], atol=1e-5)
    assert th.allclose(traj.actions, a, atol=1e-5)


class StateDependentStdPolicy:
    """mean = tanh(s W), std = 0.2 + 0.3 sigmoid(s V): a gradient in the states runs through both."""

    def __init__(self) -> None:
        gen = th.Generator().manual_seed(1)
        self.weight = th.randn(OBS_DIM, ACT_DIM, generator=gen)
        self.std_weight = th.randn(OBS_DIM, ACT_DIM, generator=gen)

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return th.tanh(observations @ self.weight), 0.2 + 0.3 * th.sigmoid(observations @ self.std_weight)


@pytest.mark.parametrize("states_for_guidance", ["recon", "posterior_mean"])
def test_update_states_ablation_is_the_reference_step(states_for_guidance):
    """``update_states=True`` against the reference's guided step written out (polygrad/sampling/functions.py, with
    ``guidance_type="grad"``): the actions are guided first, at the guidance states; then the guidance states, in
    normalised units, take a step of g times the gradient of log pi(guided actions | unnormalise(states)), are written
    into the predicted clean window (whichever states guided), the start state is inpainted again, and the posterior mean
    is recomputed from that window without the late-step clip. The normaliser is not the identity, so the units show."""
    g, n_steps, clip_steps, batch = 0.03, 6, 3, 16  # g < min sigma_pi^2 = 0.04: the guidance cap is inactive
    denoiser, sampler, normalizer = make(
        "grad", n_steps=n_steps, state_change_clip_steps=clip_steps, update_states=True,
        states_for_guidance=states_for_guidance,
    )  # fmt: skip
    gen = th.Generator().manual_seed(5)
    normalizer.update(
        th.randn(256, H, OBS_DIM, generator=gen) * 2 + 1,
        th.randn(256, H, ACT_DIM, generator=gen) * 0.5 - 0.2,
        th.randn(256, H, generator=gen),
        th.zeros(256, H),
    )
    obs_norm, act_norm = normalizer.observations, normalizer.actions
    policy, sched = StateDependentStdPolicy(), sampler.schedule
    obs0 = th.randn(batch, OBS_DIM, generator=gen)
    got_x, got_a = sampler.sample(
        denoiser, normalizer, obs0, H, policy=policy, guidance_scale=g, generator=th.Generator().manual_seed(0)
    )

    def log_pi(raw_actions: th.Tensor, states: th.Tensor) -> th.Tensor:
        mu, sigma = policy.action_distribution_params(obs_norm.unnormalize(states))  # the policy takes raw states
        return (-0.5 * ((raw_actions - mu) / sigma) ** 2 - sigma.log()).sum()

    rng = th.Generator().manual_seed(0)
    x = th.randn(batch, H, OBS_DIM + 2, generator=rng)
    x[:, 0, :OBS_DIM] = obs0
    a = th.randn(batch, H, ACT_DIM, generator=rng)
    steps = list(zip(sched.sampling_t, sched.sampling_coefficients, strict=True))
    for k, (t, (sqrt_alpha_bar, _, coef_x0, coef_xt, std)) in enumerate(steps):
        with th.no_grad():
            x0 = denoiser(x, sqrt_alpha_bar * a, th.full((batch,), t))
        x0[:, 0, :OBS_DIM] = obs0
        mean = coef_x0 * x0 + coef_xt * x
        if t < clip_steps:
            mean = x + (mean - x).clamp(-0.25, 0.25)
        guide = (x0 if states_for_guidance == "recon" else mean)[..., :OBS_DIM]
        mu, sigma = policy.action_distribution_params(obs_norm.unnormalize(guide))
        raw_a = th.minimum(th.maximum(act_norm.unnormalize(a), mu - 3 * sigma), mu + 3 * sigma)
        if k == n_steps - 1:  # the last step clamps the actions and moves no states
            a, x = act_norm.normalize(raw_a), mean
            break
        raw_a = raw_a + g * (mu - raw_a) / sigma**2  # 1. the actions, at the guidance states
        states = guide.clone().requires_grad_(True)  # 2. the states: gradient w.r.t. the normalised states
        (grad,) = th.autograd.grad(log_pi(raw_a, states), states)
        x0 = x0.clone()
        x0[..., :OBS_DIM] = guide + g * grad
        x0[:, 0, :OBS_DIM] = obs0
        mean = coef_x0 * x0 + coef_xt * x  # 3. the posterior mean again, not clipped
        a = act_norm.normalize(raw_a) + std * th.randn(a.shape, generator=rng)
        x = mean + std * th.randn(x.shape, generator=rng)
        x[:, 0, :OBS_DIM] = obs0
    assert th.allclose(got_x, x, atol=1e-5)
    assert th.allclose(got_a, a, atol=1e-5)


@pytest.mark.parametrize("guidance_type", ["sample", "none"])
def test_update_states_moves_states_only_with_gradient_guidance(guidance_type):
    # The reference takes the state step inside its "grad" branch: with the other guidance types it does nothing.
    samples = []
    for update_states in (False, True):
        denoiser, sampler, normalizer = make(guidance_type, n_steps=6, update_states=update_states)
        samples.append(imagine(denoiser, sampler, normalizer, StateDependentStdPolicy(), g=0.03, batch=8)[1])
    assert th.equal(samples[0].observations, samples[1].observations)
    assert th.equal(samples[0].actions, samples[1].actions)


def test_action_clamp_bounds_final_actions():
    policy = FixedGaussianPolicy(std=0.3)
    denoiser, sampler, normalizer = make("none", action_clip_std=1.0, state_change_clip=None)
    _, traj = imagine(denoiser, sampler, normalizer, policy, 0.0)
    mean, _ = policy.action_distribution_params(traj.observations)
    # The clamp is applied at the predicted clean states of the last step, which are the output states when the late
    # state clip is off (at t = 0 the posterior mean is x0_hat).
    assert ((traj.actions - mean).abs() <= 0.3 + 1e-4).all()


def test_bad_sampler_options():
    with pytest.raises(ValueError, match="guidance_type"):
        make("gradient")
    with pytest.raises(ValueError, match="states_for_guidance"):
        make(states_for_guidance="noisy")
    with pytest.raises(ValueError, match="action_clip_std"):
        make(action_clip_std=-1.0)


@pytest.mark.parametrize("predict_epsilon", [False, True])
def test_compiled_sampler_gives_the_eager_samples(predict_epsilon):
    # The fast path: the same random numbers in the same order, fused arithmetic; equal to float rounding.
    denoiser, eager, normalizer = make("grad", n_steps=5, predict_epsilon=predict_epsilon, state_change_clip_steps=2)
    compiled = PolicyGuidedSampler(eager.schedule, predict_epsilon=predict_epsilon, state_change_clip_steps=2, compile=True)
    compiled.compiled_block_steps = 3  # two compiled blocks, 3 + 2 steps, the last with the clip; eager runs one block
    normalizer.update(th.randn(64, H, OBS_DIM) * 2 + 1, th.randn(64, H, ACT_DIM), th.randn(64, H), th.zeros(64, H))
    for seed, g in [(0, 0.05), (1, 0.2)]:  # a second guidance scale must not change the result's correctness
        _, expected = imagine(denoiser, eager, normalizer, FixedGaussianPolicy(), g, batch=32, seed=seed)
        _, got = imagine(denoiser, compiled, normalizer, FixedGaussianPolicy(), g, batch=32, seed=seed)
        assert th.allclose(got.observations, expected.observations, atol=1e-4)
        assert th.allclose(got.actions, expected.actions, atol=1e-4)
    assert compiled._compiled_block is not None  # the compiled loop did run


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs CUDA")
def test_compiled_sampler_on_cuda_gives_the_eager_samples_and_keeps_earlier_ones():
    # On CUDA the compiled blocks replay as CUDA graphs, whose outputs are overwritten by their next replay: every
    # result must equal the eager loop's after the later imaginations have run (the first call is a warm-up, the
    # second records the graphs, the third replays them).
    device = th.device("cuda")
    denoiser, eager, normalizer = make("grad", n_steps=5, state_change_clip_steps=2)
    compiled = PolicyGuidedSampler(eager.schedule, state_change_clip_steps=2, compile=True)
    compiled.compiled_block_steps = 3
    denoiser, normalizer = denoiser.to(device), normalizer.to(device)
    eager.schedule.to(device)
    normalizer.update(th.randn(64, H, OBS_DIM) * 2 + 1, th.randn(64, H, ACT_DIM), th.randn(64, H), th.zeros(64, H))
    policy = FixedGaussianPolicy()
    policy.weight = policy.weight.to(device)

    def sample(sampler: PolicyGuidedSampler, seed: int) -> tuple[th.Tensor, th.Tensor]:
        obs0 = th.randn(32, OBS_DIM, device=device, generator=th.Generator(device).manual_seed(seed + 100))
        gen = th.Generator(device).manual_seed(seed)
        return sampler.sample(denoiser, normalizer, obs0, H, policy=policy, guidance_scale=0.05, generator=gen)

    results = [sample(compiled, seed) for seed in range(3)]
    for seed, (x, actions) in enumerate(results):
        expected_x, expected_actions = sample(eager, seed)
        assert th.allclose(x, expected_x, atol=1e-4) and th.allclose(actions, expected_actions, atol=1e-4)


def test_compiled_sampler_can_be_copied():
    _, sampler, _ = make("grad", compile=True)
    assert copy.deepcopy(sampler)._compiled_block is None and pickle.loads(pickle.dumps(sampler)).compile


def test_action_bias_sees_a_shrinkage_that_the_std_does_not():
    class TanhPolicy:
        def action_distribution_params(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
            mean = th.tanh(3 * obs[..., :ACT_DIM])
            return mean, th.full_like(mean, 0.3)

    policy, gen = TanhPolicy(), th.Generator().manual_seed(0)
    obs = th.randn(4000, 3, OBS_DIM, generator=gen)
    mean, std = policy.action_distribution_params(obs)
    noise = th.randn(mean.shape, generator=gen)
    rewards = th.zeros(4000, 3)
    on_policy = ImaginedTrajectory(obs, mean + std * noise, rewards, rewards)
    # pulled toward 0 by 30% of the mean, with the spread narrowed so that the std of z stays 1 (what the tuner holds)
    offset = -0.3 * mean / std
    shrunk = ImaginedTrajectory(obs, mean + std * ((1 - offset.var()).sqrt() * noise + offset), rewards, rewards)
    assert abs(standardized_action_stats(policy, on_policy)[1]) < 0.05
    assert standardized_action_stats(policy, shrunk)[1] < -0.5
    # the std and the plain mean of z do not tell the two apart
    assert abs(standardized_action_std(policy, shrunk) - standardized_action_std(policy, on_policy)) < 0.05
    assert abs(((shrunk.actions - mean) / std)[:, :-1].mean().item()) < 0.05
