import pytest

from sb3_polygrad import PolyGRAD


def test_each_imagined_batch_takes_imagination_epochs_actor_critic_steps(tiny_kwargs):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, imagination_epochs=3, **tiny_kwargs)
    imagined, trained = [], []
    imagine, train_actor_critic = model.imaginer.imagine, model._train_actor_critic

    def recording_imagine(start):
        imagined.append(imagine(start))
        return imagined[-1]

    def recording_train(trajectory, real=None):
        trained.append(trajectory)
        train_actor_critic(trajectory, real)

    model.imaginer.imagine = recording_imagine
    model._train_actor_critic = recording_train
    model.learn(300)
    assert len(imagined) > 0
    # Three steps on each batch, in order, and no batch imagined without its steps.
    assert [id(t) for t in trained] == [id(t) for t in imagined for _ in range(3)]
    assert model._n_updates == 3 * len(imagined)


def test_imagination_epochs_below_one_is_refused_at_construction(tiny_kwargs):
    with pytest.raises(ValueError, match=r"imagination_epochs must be an integer in \[1, inf\), got 0"):
        PolyGRAD("MlpPolicy", "Pendulum-v1", imagination_epochs=0, **tiny_kwargs)
