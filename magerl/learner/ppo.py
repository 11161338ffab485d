"""The update: PPO clipping against the behaviour policy's log-probabilities.

Workers act with a policy a few versions old; the importance ratio between the current
policy and the one that acted corrects for it (clipped, as in PPO/APPO). Rewards are
terminal (+1 win, -1 loss). With `gae_lambda` 1 each decision's advantage is its
episode's result minus the behaviour policy's value estimate: every decision of a game
shares its result, whatever it did. Below 1 (GAE, Schulman et al. 2016) a decision is
credited mostly with the change in value over the next few decisions, which gives each
decision its own signal at the price of trusting the value head. A discount `gamma` below
1 (default 1, none) counts a result gamma**k from a decision k decisions before the end:
of two wins the shorter is worth more, and a decision's credit fades with its distance
from the result.

Reward shaping (`shaping` > 0, Ng et al. 1999) adds to each decision's advantage the
change, over the same lambda-weighted horizon, of a potential: the engine's heuristic
evaluation of the position, squashed to (-1, 1) and zero at the game's end. A potential
that depends only on the position leaves the best policy unchanged; it gives a decision
a signal from the board before the value head has learned one. The value head still
learns the game's result alone, and the policy never sees the evaluation (which may
look at hidden cards): it only weighs training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from magerl.model.encoding import collate
from magerl.model.network import PolicyNet, to_tensors
from magerl.transport.episodes import Episode

RAGGED_KEYS = ("object_counts", "candidate_counts", "players", "glob", "objects", "names", "kinds", "refs",
               "target_player", "flags")


@dataclass(frozen=True)
class PPOConfig:
    lr: float = 3e-4
    clip: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    gae_lambda: float = 0.95
    gamma: float = 1.0  # discount per decision; 1: none
    epochs: int = 2
    max_grad_norm: float = 1.0
    shaping: float = 0.0  # weight of the engine's evaluation as a shaping potential; 0: none


#: the engine's evaluation runs about ±50 once a game between the standard decks is decided
#: (measured over Easy-vs-policy games); tanh(evaluation / 20) puts that near ±1
EVALUATION_SCALE = 20.0


@dataclass
class Batch:
    inputs: dict[str, np.ndarray]  # ragged, as `encoding.stack` makes them
    actions: np.ndarray
    logp: np.ndarray
    returns: np.ndarray
    advantages: np.ndarray
    versions: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)


def gae(values: np.ndarray, end: float, lam: float, gamma: float = 1.0, cut: bool = False) -> np.ndarray:
    """Generalised advantage estimates of one episode with a terminal reward.

    The TD errors are the discounted next value minus this one; at the last decision,
    `end` minus its value, where `end` is the reward, or, where a split cut the game
    (`cut`), the next decision's value, discounted like any other. Each advantage sums
    the errors from its decision on, weighted (gamma * lam)**k. With gamma and lam 1
    they telescope to `end - values`.
    """
    deltas = np.append(gamma * values[1:], np.float32(gamma * end if cut else end)) - values
    advantages = np.empty_like(deltas)
    running = 0.0
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + gamma * lam * running
        advantages[t] = running
    return advantages


def shaping_advantages(episode: Episode, lam: float, gamma: float = 1.0) -> np.ndarray:
    """The potential's lambda-weighted change from each decision on (zeros for an episode
    without the engine's evaluations, e.g. from an older worker). The potential is 0 at
    the game's end and discounted everywhere (gamma * phi(next) - phi), as Ng et al.'s
    shaping must be to leave the best policy unchanged."""
    evaluations = episode.arrays.get("evaluations")
    if evaluations is None:
        return np.zeros(episode.length, np.float32)
    end = 0.0 if episode.bootstrap_evaluation is None else np.tanh(episode.bootstrap_evaluation / EVALUATION_SCALE)
    return gae(np.tanh(evaluations / EVALUATION_SCALE), end, lam, gamma, cut=True)


def make_batch(episodes: list[Episode], gae_lambda: float = 1.0, shaping: float = 0.0, gamma: float = 1.0) -> Batch:
    """A training batch; `returns` are the value head's targets (lambda-returns). With a
    discount, a part the learner cut from its game bootstraps from the value where it was
    cut, at lambda 1 too: a part does not carry how many decisions its game had left."""
    inputs = {k: np.concatenate([e.arrays[k] for e in episodes]) for k in RAGGED_KEYS}
    values = np.concatenate([e.arrays["values"] for e in episodes])
    if gae_lambda == 1.0 and gamma == 1.0:  # every decision's target is its game's result, even in a cut part
        advantages = np.concatenate([np.full(e.length, e.reward, np.float32) for e in episodes]) - values
    else:
        advantages = np.concatenate([gae(e.arrays["values"], e.reward if e.bootstrap is None else e.bootstrap,
                                         gae_lambda, gamma, cut=e.bootstrap is not None) for e in episodes])
    returns = (advantages + values).astype(np.float32)
    if shaping:
        advantages = advantages + shaping * np.concatenate(
            [shaping_advantages(e, gae_lambda, gamma) for e in episodes])
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-6)
    return Batch(
        inputs=inputs,
        actions=np.concatenate([e.arrays["actions"] for e in episodes]),
        logp=np.concatenate([e.arrays["logp"] for e in episodes]),
        returns=returns,
        advantages=advantages.astype(np.float32),
        versions=np.concatenate([e.arrays["versions"] for e in episodes]),
    )


def _rows(counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Row numbers, in ragged storage, of the decisions `index`."""
    starts = (np.cumsum(counts) - counts)[index]
    picked = counts[index]
    offsets = np.arange(int(picked.sum())) - np.repeat(np.cumsum(picked) - picked, picked)
    return np.repeat(starts, picked) + offsets


def slice_rows(batch: Batch, index: np.ndarray) -> dict[str, np.ndarray]:
    """The ragged inputs of the decisions `index`, padded for the network."""
    oc, cc = batch.inputs["object_counts"], batch.inputs["candidate_counts"]
    o_rows, c_rows = _rows(oc, index), _rows(cc, index)
    sub = {"object_counts": oc[index], "candidate_counts": cc[index],
           "players": batch.inputs["players"][index], "glob": batch.inputs["glob"][index]}
    for k in ("objects", "names"):
        sub[k] = batch.inputs[k][o_rows]
    for k in ("kinds", "refs", "target_player", "flags"):
        sub[k] = batch.inputs[k][c_rows]
    return collate(sub)


def loss_terms(model: PolicyNet, inputs: dict[str, torch.Tensor], actions: torch.Tensor, old_logp: torch.Tensor,
               returns: torch.Tensor, advantages: torch.Tensor, cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    logits, values = model(inputs)
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(1, actions.unsqueeze(1)).squeeze(1)
    ratio = torch.exp(logp - old_logp)
    policy_loss = -torch.min(ratio * advantages, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * advantages).mean()
    value_loss = (values.float() - returns).pow(2).mean()
    # masked_fill, not where: a where() over -inf still sends NaN gradients into the -inf branch
    entropy = -(logp_all.exp() * logp_all.masked_fill(~inputs["candidate_mask"], 0.0)).sum(-1).mean()
    loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
    stats = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item(),
             "clip_fraction": ((ratio.detach() - 1).abs() > cfg.clip).float().mean().item()}
    return loss, stats


def update(model: PolicyNet, optimizer: torch.optim.Optimizer, batch: Batch, cfg: PPOConfig, minibatch: int,
           device: torch.device, rng: np.random.Generator) -> tuple[float, dict[str, float]]:
    """Run `cfg.epochs` passes of minibatch steps over `batch`; returns the mean total loss."""
    model.train()
    losses: list[float] = []
    last: dict[str, float] = {}
    n = len(batch)
    use_bf16 = device.type == "cuda"
    for _ in range(cfg.epochs):
        order = rng.permutation(n)
        for start in range(0, n, minibatch):
            index = np.sort(order[start : start + minibatch])
            inputs = to_tensors(slice_rows(batch, index), device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss, last = loss_terms(
                    model, inputs,
                    torch.from_numpy(batch.actions[index]).long().to(device),
                    torch.from_numpy(batch.logp[index]).to(device),
                    torch.from_numpy(batch.returns[index]).to(device),
                    torch.from_numpy(batch.advantages[index]).to(device),
                    cfg,
                )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            if not torch.isfinite(norm):
                optimizer.zero_grad(set_to_none=True)
                raise FloatingPointError(f"non-finite gradient norm {float(norm)}")
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    return float(np.mean(losses)), last
