"""One actor-critic step on a batch of imagined trajectories, with the reference's small, line-searched actor steps.

Shape letters: ``B`` batch, ``H`` horizon, ``O`` obs dim, ``A`` action dim.
"""

import math
from dataclasses import dataclass

import torch as th
from torch import nn

from sb3_polygrad.common.returns import gae, masked_normalize
from sb3_polygrad.polygrad.policies import PolyGRADPolicy
from sb3_polygrad.world_model.types import ImaginedTrajectory


@dataclass
class ActorCriticConfig:
    """
    Hyperparameters of the imagined actor-critic step (sections 3.4 and 3.5).

    :param gamma: discount factor
    :param gae_lambda: GAE lambda
    :param reward_scale: factor on the imagined rewards: the critic learns returns in these units
    :param ent_coef: entropy bonus weight
    :param normalize_advantage: standardise advantages over the batch
    :param max_grad_norm: gradient-norm clip of actor and critic, each
    :param target_policy_update: target of the mean ``|log pi_old(a|s) - log pi_new(a|s)|`` of one actor step
    :param line_search: retry the actor step with a smaller or larger rate until the update size is on target
    :param line_search_tolerance: relative tolerance around ``target_policy_update``
    :param line_search_ratio: factor applied to the rate at each retry
    :param line_search_max_iters: most retries per step
    :param censored_log_prob: score actions past the bounds by their probability of being clipped there
        (``Actor.log_prob(censored=True)``)
    """

    gamma: float = 0.99
    gae_lambda: float = 0.9
    reward_scale: float = 1.0
    ent_coef: float = 1e-5
    normalize_advantage: bool = True
    max_grad_norm: float = 0.1
    target_policy_update: float = 0.01
    line_search: bool = True
    line_search_tolerance: float = 0.2
    line_search_ratio: float = 0.8
    line_search_max_iters: int = 50
    censored_log_prob: bool = False


@dataclass
class ActorCriticStats:
    """What one step measured, for the logger."""

    actor_loss: float
    critic_loss: float
    entropy: float
    update_size: float
    initial_update_size: float
    line_search_steps: int
    actor_learning_rate: float


def _set_lr(optimizer: th.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class _Snapshot:
    """
    A module's tensors and its optimiser's per-parameter state, copied into tensors of their own and restored in place.

    Why not ``copy.deepcopy`` of the two state dicts: a line search restores the actor a dozen times per step, and
    deepcopy walks the dicts in Python (7% of a CPU training loop); in-place copies restore exactly the same values.

    :param module: the module whose parameters and buffers are kept
    :param optimizer: its optimiser, whose state (e.g. Adam's moments and step counts) is kept
    """

    def __init__(self, module: nn.Module, optimizer: th.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.tensors = [(t, t.detach().clone()) for t in module.state_dict(keep_vars=True).values()]
        self.state = {
            param: {key: value.clone() if isinstance(value, th.Tensor) else value for key, value in state.items()}
            for param, state in optimizer.state.items()
        }

    @th.no_grad()
    def restore(self) -> None:
        """Put every kept value back; optimiser state created since the snapshot (a first step's) is dropped."""
        for tensor, kept in self.tensors:
            tensor.copy_(kept)
        for param in list(self.optimizer.state):
            if param not in self.state:
                del self.optimizer.state[param]
        for param, kept_state in self.state.items():
            state = self.optimizer.state[param]
            for key, value in kept_state.items():
                if isinstance(value, th.Tensor) and isinstance(state.get(key), th.Tensor):
                    state[key].copy_(value)
                else:
                    state[key] = value.clone() if isinstance(value, th.Tensor) else value


class ImaginedActorCritic:
    """
    The on-policy learner of PolyGRAD: one A2C step with GAE on imagined data, the actor's step size held near a target
    by a line search. No importance ratio: the sampler makes the imagined actions (approximately) samples of pi.

    Unlike the reference, a line-search retry restores everything the previous try changed: actor weights, ``log_std``
    and the optimiser's moments (the reference restores the weights only, so each retry also re-steps ``log_std``).

    :param policy: the policy to update (its actor and critic carry their optimisers)
    """

    def __init__(self, policy: PolyGRADPolicy) -> None:
        self.policy = policy

    def log_prob(self, traj: ImaginedTrajectory, cfg: ActorCriticConfig) -> th.Tensor:
        """``log pi`` of the imagined actions of the H-1 learned transitions, shape (B, H-1), scored as ``cfg`` says."""
        return self.policy.actor.log_prob(traj.observations[:, :-1], traj.actions[:, :-1], cfg.censored_log_prob)

    def advantages(self, traj: ImaginedTrajectory, cfg: ActorCriticConfig) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        :param traj: imagined trajectories in raw units
        :param cfg: hyperparameters
        :return: the advantages the actor weighs its log-probabilities by (standardised if ``cfg`` says), the critic's
            targets and the weights of the H-1 learned transitions (0 after a termination), each (B, H-1)
        """
        with th.no_grad():
            target_values = self.policy.critic_target(traj.observations)  # (B, H)
            rewards = cfg.reward_scale * traj.rewards
            advantages, returns, weights = gae(rewards, target_values, traj.dones, cfg.gamma, cfg.gae_lambda)
            if cfg.normalize_advantage:
                advantages = masked_normalize(advantages, weights)
        return advantages, returns, weights

    def actor_terms(
        self, traj: ImaginedTrajectory, cfg: ActorCriticConfig, advantages: th.Tensor, weights: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        :param traj: imagined trajectories in raw units
        :param cfg: hyperparameters
        :param advantages: as :meth:`advantages` returns them, (B, H-1)
        :param weights: as :meth:`advantages` returns them, (B, H-1)
        :return: each transition's term of the actor loss (their mean is the loss), (B, H-1); the log-probabilities
            (B, H-1) and the entropy
        """
        log_prob = self.log_prob(traj, cfg)
        entropy = self.policy.actor.entropy()
        return weights * (-log_prob * advantages - cfg.ent_coef * entropy), log_prob, entropy

    def losses(self, traj: ImaginedTrajectory, cfg: ActorCriticConfig) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """
        :param traj: imagined trajectories in raw units
        :param cfg: hyperparameters
        :return: actor loss, critic loss, the old log-probabilities (B, H-1) and the entropy
        """
        advantages, returns, weights = self.advantages(traj, cfg)
        actor_terms, log_prob, entropy = self.actor_terms(traj, cfg, advantages, weights)
        obs = traj.observations[:, :-1]  # (B, H-1, O)
        critic_loss = (weights * 0.5 * (returns - self.policy.predict_values(obs)).square()).mean()
        return actor_terms.mean(), critic_loss, log_prob.detach(), entropy.detach()

    def update_size(self, traj: ImaginedTrajectory, cfg: ActorCriticConfig, old_log_prob: th.Tensor) -> float:
        """Mean ``|log pi_old - log pi_new|`` over the batch, after a step."""
        with th.no_grad():
            return (self.log_prob(traj, cfg) - old_log_prob).abs().mean().item()

    def step(self, traj: ImaginedTrajectory, cfg: ActorCriticConfig, actor_lr: float, max_actor_lr: float) -> ActorCriticStats:
        """
        One gradient step of critic and actor.

        :param traj: imagined trajectories
        :param cfg: hyperparameters (built from the algorithm's attributes, so changing one takes effect at once)
        :param actor_lr: the actor's current (adaptive) learning rate
        :param max_actor_lr: upper bound of the line search
        :return: statistics of the step
        """
        actor, critic = self.policy.actor, self.policy.critic
        actor_loss, critic_loss, old_log_prob, entropy = self.losses(traj, cfg)
        actor.optimizer.zero_grad()
        critic.optimizer.zero_grad()
        (actor_loss + critic_loss).backward()
        nn.utils.clip_grad_norm_(actor.parameters(), cfg.max_grad_norm)
        nn.utils.clip_grad_norm_(critic.parameters(), cfg.max_grad_norm)
        critic.optimizer.step()

        snapshot = _Snapshot(actor, actor.optimizer)
        _set_lr(actor.optimizer, actor_lr)
        actor.optimizer.step()
        initial = size = self.update_size(traj, cfg, old_log_prob)
        lr, steps = actor_lr, 0
        while cfg.line_search and lr > 0 and steps < cfg.line_search_max_iters:  # a zero rate cannot be searched
            if abs(size - cfg.target_policy_update) <= cfg.line_search_tolerance * cfg.target_policy_update:
                break
            new_lr = lr * cfg.line_search_ratio if size > cfg.target_policy_update else lr / cfg.line_search_ratio
            if new_lr > max_actor_lr:
                break  # the step is too small even at the largest rate allowed: keep it
            # Retry from exactly the state before the step, gradients unchanged.
            snapshot.restore()
            lr, steps = new_lr, steps + 1
            _set_lr(actor.optimizer, lr)
            actor.optimizer.step()
            size = self.update_size(traj, cfg, old_log_prob)
        return ActorCriticStats(
            actor_loss=actor_loss.item(),
            critic_loss=critic_loss.item(),
            entropy=entropy.item(),
            update_size=size,
            initial_update_size=initial,
            line_search_steps=steps,
            actor_learning_rate=lr,
        )


class AdaptiveLearningRate:
    """
    The actor's learning rate, adapted so that one step changes ``log pi`` by about the target (section 3.5).

    A learnable ``log lr`` minimises ``-log lr * (target - u)`` with Adam, where ``u`` is the update size of the first
    try, and is capped by ``max_lr``. (The reference uses AdamW, whose weight decay pulls ``log lr`` toward 0, i.e. the
    rate toward 1; decay has no meaning for a log-rate, so plain Adam is used.)

    :param init_lr: initial learning rate
    :param learning_rate: Adam rate on ``log lr``
    :param device: device of the parameter
    """

    def __init__(self, init_lr: float, learning_rate: float, device: th.device) -> None:
        # A zero rate is legitimate (the zoo's enjoy loads models with learning_rate 0); its log is floored.
        self.log_lr = th.tensor(math.log(max(init_lr, 1e-12)), device=device, requires_grad=True)
        self.optimizer = th.optim.Adam([self.log_lr], lr=learning_rate)

    @property
    def value(self) -> float:
        return math.exp(self.log_lr.item())

    def update(self, update_size: float, target: float, max_lr: float) -> None:
        """Move ``log lr`` toward a step of the ``target`` size, then cap it at ``max_lr``."""
        self.optimizer.zero_grad()
        (-self.log_lr * (target - update_size)).backward()
        self.optimizer.step()
        with th.no_grad():
            # A schedule that decays to 0 (the zoo's "lin_" rates) ends at max_lr = 0: floored, as in __init__.
            self.log_lr.clamp_(max=math.log(max(max_lr, 1e-12)))
