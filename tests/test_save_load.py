import io

import numpy as np
import pytest
import torch as th
from stable_baselines3.common import save_util
from stable_baselines3.common.env_util import make_vec_env

from sb3_polygrad import PolyGRAD


def state_of(model: PolyGRAD) -> dict[str, th.Tensor]:
    """Everything that must survive a checkpoint, flattened to named tensors."""
    out = {f"policy.{k}": v for k, v in model.policy.state_dict().items()}
    out.update({f"world_model.{k}": v for k, v in model.world_model.state_dict().items()})
    for name, opt in [
        ("actor", model.actor.optimizer),
        ("critic", model.critic.optimizer),
        ("wm", model.world_model_optimizer),
        ("actor_lr", model.actor_lr.optimizer),
    ]:
        for pid, pstate in opt.state_dict()["state"].items():
            for key, value in pstate.items():
                out[f"{name}_opt.{pid}.{key}"] = th.as_tensor(value)
    out["log_guidance_scale"] = model.log_guidance_scale
    out["log_actor_lr"] = model.actor_lr.log_lr
    return out


def test_save_load_keeps_everything(tiny_kwargs, tmp_path):
    imagination_kwargs = dict(start_window=200, guidance_learning_rate=0.01, state_change_clip_steps=3)
    actor_critic_kwargs = dict(reward_scale=0.5, target_policy_update=0.02, action_std_schedule=(1.0, 0.5))
    model = PolyGRAD(
        "MlpPolicy",
        "InvertedPendulum-v4",
        seed=0,
        imagination_kwargs=imagination_kwargs,
        actor_critic_kwargs=actor_critic_kwargs,
        **tiny_kwargs,
    )
    model.learn(300)
    # the learned state differs from a fresh model's in every part
    assert model.log_guidance_scale.item() != pytest.approx(np.log(0.005))
    assert model.world_model.normalizer.observations.count.item() == 300
    assert int(model.world_model.n_updates) > 0
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")

    loaded = PolyGRAD.load(tmp_path / "model.zip", env=make_vec_env("InvertedPendulum-v4", n_envs=1, seed=1))
    before, after = state_of(model), state_of(loaded)
    assert before.keys() == after.keys()
    for key in before:
        assert th.equal(before[key].cpu(), after[key].cpu()), key
    assert loaded.num_timesteps == 300 and loaded.horizon == model.horizon
    assert loaded.world_model.sampler.state_change_clip_steps == model.world_model.sampler.state_change_clip_steps == 3
    # the components' options: as given, and as the actor-critic and the imagination method read them
    assert loaded.imagination_kwargs == imagination_kwargs
    assert loaded.actor_critic_kwargs == {**actor_critic_kwargs, "action_std_schedule": [1.0, 0.5]}  # JSON's list
    assert loaded.actor_critic_config() == model.actor_critic_config()
    assert loaded._imagination_setup == model._imagination_setup
    assert loaded.imaginer.learning_rate == 0.01  # type: ignore[attr-defined]  # guided imagination's tuner

    obs = np.random.default_rng(0).normal(size=(20, 4))
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])

    # imagination from the same start states with the same random stream is identical
    start = th.as_tensor(obs[:8], dtype=th.float32)
    th.manual_seed(0)
    a = model.world_model.imagine(start, model.policy, model.log_guidance_scale.exp().item())
    th.manual_seed(0)
    b = loaded.world_model.imagine(start, loaded.policy, loaded.log_guidance_scale.exp().item())
    assert th.equal(a.observations, b.observations) and th.equal(a.actions, b.actions)

    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer.sim_states is not None
    assert np.array_equal(loaded.replay_buffer.sim_states, model.replay_buffer.sim_states)
    loaded.learn(200, reset_num_timesteps=False)
    assert loaded.num_timesteps == 500
    assert int(loaded.world_model.n_updates) > int(model.world_model.n_updates)


def test_set_env_and_predict_single_obs(tiny_kwargs, tmp_path):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs)
    model.learn(150)
    model.set_env(make_vec_env("Pendulum-v1", n_envs=1, seed=3))
    model.learn(150, reset_num_timesteps=False)
    assert 300 <= model.num_timesteps < 300 + 2 * 4  # collection runs in whole train_freq units, as in SB3
    action, _ = model.predict(np.zeros(3, dtype=np.float32), deterministic=True)
    assert action.shape == (1,) and -2 <= action[0] <= 2


def test_policy_save_load(tiny_kwargs, tmp_path):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs)
    model.learn(150)
    model.policy.save(tmp_path / "policy.pkl")
    policy = type(model.policy).load(tmp_path / "policy.pkl")
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    assert np.array_equal(policy.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


class Killed(BaseException):
    """Stands for the run being killed (a preempted job, a checkpoint callback interrupted) while it writes a file."""


def killed_midway(obj: object, file: io.BufferedIOBase, *args: object, **kwargs: object) -> None:
    file.write(b"the first bytes of a checkpoint")
    raise Killed


def test_a_save_killed_midway_leaves_the_previous_checkpoint_whole(tiny_kwargs, tmp_path, monkeypatch):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs)
    model.learn(120)
    model.save(tmp_path / "model")  # SB3 adds the suffixes: model.zip, buffer.pkl
    model.save_replay_buffer(tmp_path / "buffer")
    saved = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert saved.keys() == {"model.zip", "buffer.pkl"}

    model.learn(40, reset_num_timesteps=False)
    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(save_util.th, "save", killed_midway)
        model.save(tmp_path / "model")
    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(save_util.pickle, "dump", killed_midway)
        model.save_replay_buffer(tmp_path / "buffer")
    # the previous files are untouched, and no partial file is left beside them
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == saved
    loaded = PolyGRAD.load(tmp_path / "model.zip")
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.num_timesteps == 120 and loaded.replay_buffer.pos == 120

    # a save that completes replaces them, also where SB3 creates the folder or writes to an open stream
    model.save(tmp_path / "model")
    with pytest.warns(UserWarning, match="does not exist"):  # SB3's own note
        model.save(tmp_path / "new" / "model.zip")
    stream = io.BytesIO()
    model.save(stream)
    for source in (tmp_path / "model.zip", tmp_path / "new" / "model.zip", io.BytesIO(stream.getvalue())):
        assert PolyGRAD.load(source).num_timesteps == 160
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["buffer.pkl", "model.zip", "model.zip", "new"]


def test_a_model_saved_before_the_options_were_grouped_is_refused_rather_than_loaded_without_them(tiny_kwargs, tmp_path):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs)
    model.reward_scale = 0.1  # type: ignore[attr-defined]  # as an earlier version saved its flat arguments
    model.imagination_start_window = 5000  # type: ignore[attr-defined]
    model.save(tmp_path / "old")
    with pytest.raises(ValueError, match=r"arguments \['reward_scale', 'imagination_start_window'\] are now"):
        PolyGRAD.load(tmp_path / "old")
