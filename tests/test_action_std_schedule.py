import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sb3_polygrad import PolyGRAD

BUDGET = 400


class RecordStd(BaseCallback):
    """The policy's mean std and the env steps so far, at every env step."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        self.rows.append((self.model.num_timesteps, self.model.actor.std().mean().item()))
        return True


def test_the_scheduled_action_std_moves_linearly_over_the_budget_and_is_not_learnt(tiny_kwargs):
    model = PolyGRAD(
        "MlpPolicy", "Pendulum-v1", seed=0, actor_critic_kwargs=dict(action_std_schedule=(1.0, 0.3)), **tiny_kwargs
    )
    assert model.actor.std().mean().item() == pytest.approx(1.0)
    callback = RecordStd()
    model.learn(BUDGET, callback=callback)
    assert model._n_updates > 0 and not model.actor.log_std.requires_grad
    # Set at each training call (every train_freq = 4 env steps once learning starts): at most 4 steps behind.
    for steps, std in callback.rows:
        if steps > tiny_kwargs["learning_starts"] + tiny_kwargs["train_freq"]:
            behind = [0.3 + 0.7 * (1 - (steps - lag) / BUDGET) for lag in range(tiny_kwargs["train_freq"] + 1)]
            assert min(behind) - 1e-5 <= std <= max(behind) + 1e-5, (steps, std)
    assert model.actor.std().mean().item() == pytest.approx(0.3, abs=1e-5)


def test_without_a_schedule_the_std_is_learnt(tiny_kwargs):
    # What the schedule replaces: the same run's actor-critic moves a learnt std away from its start.
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs)
    model.learn(BUDGET)
    assert model.actor.log_std.requires_grad
    assert not th.allclose(model.actor.std(), th.ones(1), atol=1e-4)


def test_a_scheduled_std_survives_save_and_load(tiny_kwargs, tmp_path):
    model = PolyGRAD(
        "MlpPolicy", "Pendulum-v1", seed=0, actor_critic_kwargs=dict(action_std_schedule=[0.8, 0.4]), **tiny_kwargs
    )
    model.learn(200)
    model.save(tmp_path / "model.zip")
    loaded = PolyGRAD.load(tmp_path / "model.zip")
    assert loaded.actor_critic_config().action_std_schedule == (0.8, 0.4)  # a YAML or JSON list, as a tuple
    assert th.equal(loaded.actor.std(), model.actor.std()) and not loaded.actor.log_std.requires_grad
    assert loaded.actor.std().mean().item() == pytest.approx(0.4, abs=1e-5)  # the end of the budget


class StopAt(BaseCallback):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return self.model.num_timesteps < self.steps


def test_a_run_stopped_and_continued_from_its_save_goes_on_along_the_same_schedule(tiny_kwargs, tmp_path):
    # As benchmarks.run resumes a job: learn(budget - done, reset_num_timesteps=False) on the loaded model.
    model = PolyGRAD(
        "MlpPolicy", "Pendulum-v1", seed=0, actor_critic_kwargs=dict(action_std_schedule=(1.0, 0.3)), **tiny_kwargs
    )
    model.learn(BUDGET, callback=StopAt(BUDGET // 2))
    assert model.num_timesteps == BUDGET // 2
    assert model.actor.std().mean().item() == pytest.approx(0.65, abs=0.01)  # half-way: 0.3 + 0.7 / 2
    model.save(tmp_path / "model.zip")
    loaded = PolyGRAD.load(tmp_path / "model.zip", env=model.get_env())
    callback = RecordStd()
    loaded.learn(BUDGET - loaded.num_timesteps, callback=callback, reset_num_timesteps=False)
    first_steps, first_std = callback.rows[0]
    assert first_steps == BUDGET // 2 + 1 and first_std == pytest.approx(0.65, abs=0.01)  # no jump back to 1.0
    assert loaded.actor.std().mean().item() == pytest.approx(0.3, abs=1e-5)


@pytest.mark.parametrize(
    "schedule, message",
    [
        ((1.0,), "two numbers"),
        (0.5, "two numbers"),
        ((1.0, "0.3"), "two numbers"),
        ((True, 0.3), "two numbers"),
        ((1.0, float("nan")), "two numbers"),
        ((1.0, 0.05), "min_std"),
    ],
)
def test_an_action_std_schedule_out_of_range_is_refused_when_the_model_is_built(tiny_kwargs, schedule, message):
    with pytest.raises(ValueError, match=message):
        PolyGRAD("MlpPolicy", "Pendulum-v1", actor_critic_kwargs=dict(action_std_schedule=schedule), **tiny_kwargs)
