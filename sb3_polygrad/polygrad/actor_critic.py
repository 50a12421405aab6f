"""One actor-critic step on a batch of imagined trajectories, with the reference's small, line-searched actor steps.

Shape letters: ``B`` batch, ``H`` horizon, ``O`` obs dim, ``A`` action dim.
"""

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch as th
from torch import nn

from sb3_polygrad.common.returns import gae, masked_normalize
from sb3_polygrad.polygrad.policies import Critic, PolyGRADPolicy
from sb3_polygrad.world_model.types import ImaginedTrajectory


@dataclass
class ActorCriticConfig:
    """
    The options of the imagined actor-critic (sections 3.4 and 3.5): ``gamma``, ``gae_lambda`` and ``ent_coef`` are
    PolyGRAD's own arguments, as in SB3's PPO; the others are the keys of its ``actor_critic_kwargs``. The defaults are
    the paper's.

    :param gamma: discount factor
    :param gae_lambda: GAE lambda
    :param reward_scale: factor on the imagined rewards before the actor-critic, so that the critic learns scaled
        returns (the policy gradient keeps its direction: advantages are standardised). Not in the paper: this package's
        extension for long discounts, whose returns a critic would otherwise take many steps to reach (Adam moves each
        weight by about its learning rate per step)
    :param ent_coef: entropy bonus weight
    :param normalize_advantage: standardise advantages over the imagined batch
    :param max_grad_norm: gradient-norm clip of actor and critic, each
    :param target_policy_update: target of the mean ``|log pi_old(a|s) - log pi_new(a|s)|`` of one actor step
    :param line_search: retry the actor step with a smaller or larger rate until the update size is on target
    :param line_search_tolerance: relative tolerance around ``target_policy_update``
    :param line_search_ratio: factor applied to the rate at each retry
    :param line_search_max_iters: most retries per step
    :param censored_log_prob: in the actor's loss, score an imagined action past the action bounds by the probability
        of being clipped there, as the env clips it, instead of by the Gaussian density (the paper uses the density,
        under which actions past the bound keep pushing the tanh mean into saturation; ``Actor.log_prob``)
    :param adaptive_actor_lr: adapt the actor's learning rate toward ``target_policy_update`` (``AdaptiveLearningRate``)
    :param actor_lr_learning_rate: Adam rate of the adaptive actor learning rate (on its log)
    :param normalize_returns: let the critic learn standardised returns, ``(R - mean) / std`` with running statistics of
        the imagined returns, its last layer rescaled at each change of the statistics so that its values stay the same
        (PopArt, van Hasselt et al. 2016; ``ReturnNormalizer``). Not in the paper: this package's extension, so that
        one critic learning rate serves tasks whose returns differ by orders of magnitude, in place of a per-task
        ``reward_scale``
    :param action_std_schedule: ``(initial, final)``: the policy's action std is then not learnt but moves linearly
        from ``initial`` to ``final`` over the learning budget, as the exploration std of DrQ-v2 does (``None``: learnt,
        as in the paper). This package's extension: with a learnt std the actor-critic optimises its noisy samples, and
        on Hopper a policy whose samples hop could fall with its mean action, which deterministic evaluation takes; a
        std that ends small makes the mean action the behaviour it learnt. Both values must exceed the policy's
        ``min_std``
    :param real_vf_coef: weight of a second critic loss, on the real windows that imagination starts from (their
        lambda-returns from the recorded rewards and terminations, bootstrapped by the target critic as imagined ones
        are), beside the loss on imagined trajectories; 0: the critic learns from imagination alone, as in the paper.
        This package's extension: real returns hold the critic to what the policy earns in the env where imagination
        would lead it to overvalue a policy (MBPO's critic, likewise, learns from real and model data). The recorded
        actions are the behaviour policy's: close to the current policy's where imagination starts from the newest
        transitions (``imagination_kwargs['start_window']``)
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
    adaptive_actor_lr: bool = True
    actor_lr_learning_rate: float = 3e-4
    normalize_returns: bool = False
    action_std_schedule: tuple[float, float] | None = None
    real_vf_coef: float = 0.0

    @classmethod
    def from_kwargs(
        cls, gamma: float, gae_lambda: float, ent_coef: float, actor_critic_kwargs: Mapping[str, Any]
    ) -> "ActorCriticConfig":
        """
        :param gamma: PolyGRAD's discount factor
        :param gae_lambda: PolyGRAD's GAE lambda
        :param ent_coef: PolyGRAD's entropy bonus weight
        :param actor_critic_kwargs: PolyGRAD's ``actor_critic_kwargs``, keys among ``ACTOR_CRITIC_OPTIONS``
        :return: the configuration
        :raises ValueError: for another key, naming the valid ones, or an ``action_std_schedule`` that is not two numbers
        """
        unknown = sorted(set(actor_critic_kwargs) - set(ACTOR_CRITIC_OPTIONS))
        if unknown:
            raise ValueError(f"actor_critic_kwargs takes the keys {list(ACTOR_CRITIC_OPTIONS)}; not {unknown}")
        kwargs = dict(actor_critic_kwargs)
        schedule = kwargs.get("action_std_schedule")
        if schedule is not None:  # a YAML list from the zoo, or a tuple that save() wrote as a JSON list
            if not isinstance(schedule, (tuple, list)) or len(schedule) != 2 or not all(map(_finite_number, schedule)):
                raise ValueError(
                    f"actor_critic_kwargs['action_std_schedule'] must be (initial, final), two numbers, got {schedule!r}"
                )
            kwargs["action_std_schedule"] = tuple(schedule)
        return cls(gamma=gamma, gae_lambda=gae_lambda, ent_coef=ent_coef, **kwargs)


# The options that PolyGRAD takes in actor_critic_kwargs: all but its own gamma, gae_lambda and ent_coef.
ACTOR_CRITIC_OPTIONS: tuple[str, ...] = tuple(
    f.name for f in fields(ActorCriticConfig) if f.name not in ("gamma", "gae_lambda", "ent_coef")
)


def _finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


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
    # the critic's return statistics, with ``normalize_returns``; its loss on real windows, with ``real_vf_coef``
    critic_stats: dict[str, float] = field(default_factory=dict)

    def logged(self) -> dict[str, float]:
        """The figures PolyGRAD logs under ``train/``, by name."""
        return {
            "actor_loss": self.actor_loss,
            "critic_loss": self.critic_loss,
            "entropy": self.entropy,
            "actor_learning_rate": self.actor_learning_rate,
            "policy_update_size": self.update_size,
            "line_search_steps": self.line_search_steps,
            **self.critic_stats,
        }


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


class ReturnNormalizer:
    """
    Running mean and std of the critic's targets, and the rescaling of the critic's last layer that keeps its values
    when they change (PopArt's "preserving outputs precisely", van Hasselt et al. 2016). The statistics live in the
    critics' buffers (``Critic.return_mean``, ``return_std``, ``return_second_moment``), so they are saved with the
    policy and a loaded model continues them, and the critic and its target always share them.

    :param critics: the critic and its target
    """

    # Exponential moving averages of the first two moments: a time constant of about 100 actor-critic steps follows
    # returns that grow as the policy learns; a floor on the std keeps near-constant returns from being blown up.
    rate = 0.01
    min_std = 1e-2

    def __init__(self, *critics: Critic) -> None:
        self.critics = critics

    @th.no_grad()
    def update(self, returns: th.Tensor, weights: th.Tensor) -> None:
        """
        Move the statistics toward the batch's (the first batch sets them), and rescale each critic's last layer to
        keep its values.

        :param returns: the critic's targets, (B, H-1)
        :param weights: their weights (0 after a termination), (B, H-1)
        """
        total = weights.sum().clamp(min=1.0)
        batch_mean = ((weights * returns).sum() / total).item()
        batch_second = ((weights * returns.square()).sum() / total).item()
        critic = self.critics[0]
        old_mean, old_std, second = (critic.return_mean.item(), critic.return_std.item(), critic.return_second_moment.item())
        if second < 0:  # the first batch
            mean, second = batch_mean, batch_second
        else:
            mean, second = old_mean + self.rate * (batch_mean - old_mean), second + self.rate * (batch_second - second)
        std = max(math.sqrt(max(second - mean**2, 0.0)), self.min_std)
        for net in self.critics:
            last = net.net[-1]
            assert isinstance(last, nn.Linear)
            last.weight.mul_(old_std / std)
            last.bias.mul_(old_std).add_(old_mean - mean).div_(std)
            net.return_mean.fill_(mean)
            net.return_std.fill_(std)
            net.return_second_moment.fill_(second)


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
        self.return_normalizer = ReturnNormalizer(policy.critic, policy.critic_target)

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
        advantages, returns, weights = self.gae_targets(traj, cfg)
        if cfg.normalize_advantage:
            advantages = masked_normalize(advantages, weights)
        return advantages, returns, weights

    @th.no_grad()
    def gae_targets(self, traj: ImaginedTrajectory, cfg: ActorCriticConfig) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """GAE of ``traj`` with the target critic: raw advantages, the critic's targets and the weights, each (B, H-1)."""
        target_values = self.policy.critic_target(traj.observations)  # (B, H)
        return gae(cfg.reward_scale * traj.rewards, target_values, traj.dones, cfg.gamma, cfg.gae_lambda)

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

    def critic_loss(self, obs: th.Tensor, returns: th.Tensor, weights: th.Tensor, cfg: ActorCriticConfig) -> th.Tensor:
        """
        :param obs: the states of the learned transitions, (B, H-1, O)
        :param returns: the critic's targets there, (B, H-1)
        :param weights: their weights (0 after a termination), (B, H-1)
        :param cfg: hyperparameters
        :return: the weighted squared error of the critic, in the units it learns (standardised with
            ``normalize_returns``)
        """
        if cfg.normalize_returns:
            critic = self.policy.critic
            errors = (returns - critic.return_mean) / critic.return_std - critic.normalized(obs)
        else:
            errors = returns - self.policy.predict_values(obs)
        return (weights * 0.5 * errors.square()).mean()

    def losses(
        self, traj: ImaginedTrajectory, cfg: ActorCriticConfig, real: ImaginedTrajectory | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor, th.Tensor | None]:
        """
        :param traj: imagined trajectories in raw units
        :param cfg: hyperparameters
        :param real: the real windows imagination started from, in the same layout (``dones`` their terminations);
            the critic also learns from them where ``cfg.real_vf_coef`` is positive
        :return: actor loss, critic loss (with its term on ``real``), the old log-probabilities (B, H-1), the entropy and
            the critic's loss on ``real`` alone (``None`` where it does not learn from them)
        """
        advantages, returns, weights = self.advantages(traj, cfg)
        actor_terms, log_prob, entropy = self.actor_terms(traj, cfg, advantages, weights)
        if cfg.normalize_returns:  # the statistics follow the imagined returns, the critic's main targets
            self.return_normalizer.update(returns, weights)
        critic_loss = self.critic_loss(traj.observations[:, :-1], returns, weights, cfg)
        real_loss = None
        if real is not None and cfg.real_vf_coef > 0:
            # the critic's targets only: the real windows' advantages are not used
            _, real_returns, real_weights = self.gae_targets(real, cfg)
            real_loss = self.critic_loss(real.observations[:, :-1], real_returns, real_weights, cfg)
            critic_loss = critic_loss + cfg.real_vf_coef * real_loss
        return actor_terms.mean(), critic_loss, log_prob.detach(), entropy.detach(), real_loss

    def critic_stats(self, cfg: ActorCriticConfig, real_loss: th.Tensor | None) -> dict[str, float]:
        """The critic's return statistics, with ``normalize_returns``, and its loss on real windows, where it had one."""
        critic = self.policy.critic
        stats = (
            {"return_mean": critic.return_mean.item(), "return_std": critic.return_std.item()} if cfg.normalize_returns else {}
        )
        if real_loss is not None:
            stats["real_critic_loss"] = real_loss.item()
        return stats

    def update_size(self, traj: ImaginedTrajectory, cfg: ActorCriticConfig, old_log_prob: th.Tensor) -> float:
        """Mean ``|log pi_old - log pi_new|`` over the batch, after a step."""
        with th.no_grad():
            return (self.log_prob(traj, cfg) - old_log_prob).abs().mean().item()

    def step(
        self,
        traj: ImaginedTrajectory,
        cfg: ActorCriticConfig,
        actor_lr: float,
        max_actor_lr: float,
        real: ImaginedTrajectory | None = None,
    ) -> ActorCriticStats:
        """
        One gradient step of critic and actor.

        :param traj: imagined trajectories
        :param cfg: hyperparameters (built from the algorithm's attributes, so changing one takes effect at once)
        :param actor_lr: the actor's current (adaptive) learning rate
        :param max_actor_lr: upper bound of the line search
        :param real: the real windows imagination started from, as :meth:`losses` takes them
        :return: statistics of the step
        """
        actor, critic = self.policy.actor, self.policy.critic
        actor_loss, critic_loss, old_log_prob, entropy, real_loss = self.losses(traj, cfg, real)
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
            critic_stats=self.critic_stats(cfg, real_loss),
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
