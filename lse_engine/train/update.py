"""One policy update from a batch of rollouts: `epochs` PPO-clip passes, one optimizer step per pass.

The loss is the mean over every edit of the batch; edits whose advantage is 0 (e.g. a GRPO group whose
rewards are all equal) add exactly nothing, so they are not even run through the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lse_engine.train.policy import Policy, kl_k3, ppo_loss
from lse_engine.train.rewards import summarize
from lse_engine.train.rollout import Rollout


@dataclass
class Item:
    prompt_ids: list[int]
    completion: list[int]
    advantage: float
    old_logps: torch.Tensor


def _pad(rows: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:width]
    return out


def batch_loss(policy: Policy, items: Sequence[Item], clip: float, total: int) -> torch.Tensor:
    """This micro-batch's share of the batch loss (sum of its per-edit losses / all edits of the batch)."""
    logps, mask = policy.token_logps([(it.prompt_ids, it.completion) for it in items])
    old = _pad([it.old_logps for it in items], logps.shape[1]).to(logps.device)
    adv = torch.tensor([it.advantage for it in items], dtype=logps.dtype, device=logps.device)
    return ppo_loss(logps, old, adv, mask, clip) * (len(items) / max(1, total))


def ppo_update(policy: Policy, optimizer: torch.optim.Optimizer, rollouts: Sequence[Rollout], epochs: int,
               clip: float, micro_batch: int, max_grad_norm: float) -> dict[str, float]:
    """Run the update; returns the batch's loss (first pass) and gradient norm (last pass)."""
    items = [Item(r.prompt_ids, c, a, old) for r in rollouts
             for c, a, old in zip(r.completions, r.advantages, r.old_logps)]
    active = [it for it in items if it.advantage != 0.0]
    params = policy.trainable_parameters()
    first_loss, grad_norm = 0.0, 0.0
    if not active:
        return {"loss": 0.0, "grad_norm": 0.0, "active": 0.0}
    policy.model.train()
    mb = max(1, micro_batch)
    for epoch in range(max(1, epochs)):
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for start in range(0, len(active), mb):
            loss = batch_loss(policy, active[start : start + mb], clip, len(items))
            loss.backward()
            loss_sum += float(loss.detach())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf")))
        optimizer.step()
        if epoch == 0:
            first_loss = loss_sum
    policy.model.eval()
    return {"loss": first_loss, "grad_norm": grad_norm, "active": len(active) / len(items)}


def rollout_metrics(rollouts: Sequence[Rollout]) -> dict[str, float]:
    """Mean reward, mean delta (valid edits), valid fraction and KL to the base evolver of a batch."""
    kls = [kl_k3(o.unsqueeze(0), f.unsqueeze(0), torch.ones(1, len(o)))
           for ro in rollouts for o, f in zip(ro.old_logps, ro.ref_logps) if len(o)]
    return {
        **summarize([r for ro in rollouts for r in ro.rewards]),
        "kl": sum(kls) / len(kls) if kls else 0.0,
        "tokens": float(sum(ro.tokens for ro in rollouts)),
    }
