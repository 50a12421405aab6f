import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_polygrad import PolyGRAD
from sb3_polygrad.callbacks import WorldModelEvaluationCallback
from sb3_polygrad.common.termination_rules import HealthyBox, TerminationRule, termination_rule
from sb3_polygrad.imagination import RuleTerminations
from sb3_polygrad.world_model.types import ImaginedTrajectory


@pytest.mark.parametrize(
    "env_id, env_kwargs, terminates",
    [
        ("Hopper-v4", {}, True),
        ("Hopper-v5", {"exclude_current_positions_from_observation": False}, True),
        ("Hopper-v4", {"healthy_z_range": (1.1, float("inf"))}, True),
        ("Hopper-v4", {"terminate_when_unhealthy": False}, False),
        ("Walker2d-v4", {}, True),
        ("Ant-v4", {"healthy_z_range": (0.3, 0.8)}, True),  # narrowed: random actions seldom flip the default Ant
        ("Humanoid-v4", {}, True),
        ("InvertedPendulum-v4", {}, True),
        ("HalfCheetah-v4", {}, False),
    ],
)
def test_rule_reproduces_the_simulators_terminations(env_id, env_kwargs, terminates):
    rule = termination_rule(make_vec_env(env_id, n_envs=1, env_kwargs=env_kwargs))
    assert rule is not None
    env = gym.make(env_id, **env_kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    flags, predicted = [], []
    for _ in range(400):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        flags.append(terminated)
        predicted.append(rule.terminated(th.as_tensor(obs, dtype=th.float32)).item())
        if terminated or truncated:
            env.reset()
    assert np.array_equal(np.array(flags, dtype=float), np.array(predicted))
    assert any(flags) == terminates  # the comparison saw episodes end, where the task ends them


def test_rule_is_unknown_for_other_envs():
    assert termination_rule(make_vec_env("Pendulum-v1", n_envs=1)) is None


def test_trajectory_dones_end_at_the_first_unhealthy_state_and_stay_ended():
    rule = TerminationRule((HealthyBox(slice(0, 1), -1.0, 1.0),))
    heights = th.tensor([[0.0, 0.5, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 5.0]])
    dones = rule.trajectory_dones(heights[..., None])
    # the step 1 -> 2 ends the first trajectory; the third ends on its last step, which d_{H-1} repeats
    expected = th.tensor([[0.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 1.0]])
    assert th.equal(dones, expected)


def test_non_finite_observations_terminate_where_the_task_says_so():
    obs = th.tensor([[0.0, float("nan")], [0.0, 0.1]])
    assert th.equal(TerminationRule(finite=True).terminated(obs), th.tensor([1.0, 0.0]))
    assert th.equal(TerminationRule().terminated(obs), th.tensor([0.0, 0.0]))


def test_env_rule_sets_the_dones_the_actor_critic_learns_from(tiny_kwargs):
    env_rule = dict(terminations="env_rule")
    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", imagination_kwargs=env_rule, seed=0, **tiny_kwargs)
    learned: list[ImaginedTrajectory] = []
    train = model._train_actor_critic
    model._train_actor_critic = lambda trajectory, real: learned.append(trajectory) or train(trajectory, real)  # type: ignore[method-assign]
    model.learn(300)
    assert learned
    traj = learned[-1]
    expected = (traj.observations[:, 1:, 1].abs() > 0.2).float().cummax(dim=1).values
    assert th.equal(traj.dones[:, :-1], expected)
    assert model.logger.name_to_value["imagination/done_rate"] == traj.dones[:, :-1].mean().item()


def test_world_model_evaluation_logs_the_rules_termination_rate(tiny_kwargs):
    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", seed=0, **tiny_kwargs)
    model.learn(200, callback=WorldModelEvaluationCallback(eval_freq=100, n_trajectories=8))
    for prefix in ("", "data_actions_"):
        rate = model.logger.name_to_value[f"world_model/{prefix}rule_termination_rate"]
        assert 0.0 <= rate <= 1.0


def test_env_rule_fails_early_where_no_rule_is_known():
    with pytest.raises(ValueError, match=r"knows the termination rules of Hopper.*not that of Pendulum-v1"):
        PolyGRAD("MlpPolicy", "Pendulum-v1", imagination_kwargs=dict(terminations="env_rule"))
    with pytest.raises(ValueError, match=r"imagination_kwargs\['terminations'\] must be one of"):
        PolyGRAD("MlpPolicy", "Pendulum-v1", imagination_kwargs=dict(terminations="simulator"))


def test_env_rule_survives_save_and_load(tiny_kwargs, tmp_path):
    model = PolyGRAD("MlpPolicy", "Hopper-v4", imagination_kwargs=dict(terminations="env_rule"), seed=0, **tiny_kwargs)
    model.save(tmp_path / "model")
    loaded = PolyGRAD.load(tmp_path / "model", env=make_vec_env("Hopper-v4", n_envs=1))
    assert loaded.imagination_kwargs == {"terminations": "env_rule"}
    assert isinstance(loaded.imaginer, RuleTerminations) and isinstance(model.imaginer, RuleTerminations)
    assert loaded.imaginer.rule == model.imaginer.rule is not None
    # Without an env the rule is unknown: imagining says so rather than failing inside.
    obs0 = th.as_tensor(gym.make("Hopper-v4").reset(seed=0)[0][None], dtype=th.float32)
    with pytest.raises(RuntimeError, match=r"load it with env=\.\.\. or call set_env"):
        PolyGRAD.load(tmp_path / "model").imagine(obs0)


@pytest.mark.parametrize("imagination", ["closed_loop", "simulator"])
def test_imagine_is_the_actor_critics_imagination_with_its_terminal_flags(imagination, tiny_kwargs):
    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", imagination=imagination, denoiser="causal_mlp",
                     imagination_kwargs=dict(terminations="env_rule"), seed=0, **tiny_kwargs)  # fmt: skip
    obs0 = th.as_tensor(np.stack([gym.make("InvertedPendulum-v4").reset(seed=i)[0] for i in range(8)]), dtype=th.float32)
    imagined = model.imagine(obs0, th.Generator().manual_seed(0))
    # the world model's imagination ("simulator" stands in for guided sampling), the same samples given the same seed
    generator, wm = th.Generator().manual_seed(0), model.world_model
    if imagination == "closed_loop":
        expected = wm.imagine_closed_loop(obs0, model.policy, 1.0, generator)  # ClosedLoopOptions' default row lag
    else:
        expected = wm.imagine(obs0, model.policy, model.log_guidance_scale.exp().item(), generator)
    assert th.equal(imagined.observations, expected.observations) and th.equal(imagined.actions, expected.actions)
    assert th.equal(imagined.dones[:, :-1], (imagined.observations[:, 1:, 1].abs() > 0.2).float().cummax(dim=1).values)
