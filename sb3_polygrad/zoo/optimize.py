"""PolyGRAD's search space for the zoo's ``-optimize`` (Optuna), in the zoo's sampler/converter convention."""

from typing import TYPE_CHECKING, Any

from sb3_polygrad.polygrad.actor_critic import ACTOR_CRITIC_OPTIONS

if TYPE_CHECKING:  # only for the annotations: the zoo has imported optuna before it calls a sampler
    import optuna


def sample_polygrad_params(trial: "optuna.Trial", n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sample the hyperparameters that the paper tunes or that the defaults are most sensitive to.

    Each range brackets the paper's value (in brackets, section 4.1 of ``docs/method.md``); everything else comes from
    the YAML entry and ``-params``. The architecture is left to the YAML: it sets the cost of a trial, not its outcome.

    :param trial: the Optuna trial
    :param n_actions: action dimension (unused: the zoo passes it to every sampler)
    :param n_envs: number of envs (unused, as above)
    :param additional_args: the zoo's HER settings (unused, as above)
    :return: PolyGRAD constructor keyword arguments
    """
    params = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-4, log=True),  # actor's largest rate [3e-5]
        "critic_learning_rate": trial.suggest_float("critic_learning_rate", 1e-4, 1e-3, log=True),  # [3e-4]
        "world_model_learning_rate": trial.suggest_float("world_model_learning_rate", 1e-4, 1e-3, log=True),  # [3e-4]
        "gae_lambda": trial.suggest_float("gae_lambda", 0.8, 0.98),  # [0.9]
        "ent_coef": trial.suggest_float("ent_coef", 1e-6, 1e-3, log=True),  # [1e-5]
        "target_policy_update": trial.suggest_float("target_policy_update", 3e-3, 3e-2, log=True),  # [0.01]
        "horizon": trial.suggest_categorical("horizon", [5, 10, 15]),  # [10]
        "noise_schedule_tau": trial.suggest_categorical("noise_schedule_tau", [0.1, 0.3, 1.0]),  # [0.1 Hopper, else 1.0]
    }
    return convert_polygrad_params(params)


def convert_polygrad_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn a trial's stored params into constructor keyword arguments (the zoo's ``--trial-id`` reload).

    The sampler names every Optuna parameter after its constructor argument or its key in ``actor_critic_kwargs``.

    :param params: ``trial.params``
    :return: PolyGRAD constructor keyword arguments
    """
    kwargs = {name: value for name, value in params.items() if name not in ACTOR_CRITIC_OPTIONS}
    actor_critic_kwargs = {name: value for name, value in params.items() if name in ACTOR_CRITIC_OPTIONS}
    return {**kwargs, "actor_critic_kwargs": actor_critic_kwargs} if actor_critic_kwargs else kwargs
