"""One policy update from a batch of rollouts: `ppo_epochs` PPO-clip passes (1, on-policy, as the
reference), one optimizer step per pass, gradients accumulated over micro-batches.

The loss is aggregated over the whole batch as the reference's `loss_agg_mode`: `token-mean` divides the
sum over every completion token by the batch's token count, `seq-mean` averages per completion (an edit of the
facts request is one completion per mistake asked about, each with the edit's advantage). Edits whose
advantage is 0 (e.g. a GRPO group whose rewards are all equal) add exactly nothing to the sum, so they are
not even run through the model (they still count in the denominator, as in the reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lse_engine.llm import cpu_threads
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


def batch_loss(policy: Policy, items: Sequence[Item], clip: float, agg: str,
               denominator: float) -> torch.Tensor:
    """This micro-batch's share of the batch loss (its summed losses / the whole batch's denominator)."""
    logps, mask = policy.token_logps([(it.prompt_ids, it.completion) for it in items])
    old = _pad([it.old_logps for it in items], logps.shape[1]).to(logps.device)
    adv = torch.tensor([it.advantage for it in items], dtype=logps.dtype, device=logps.device)
    return ppo_loss(logps, old, adv, mask, clip, agg, denominator)


def ppo_update(policy: Policy, optimizer: torch.optim.Optimizer, rollouts: Sequence[Rollout], epochs: int,
               clip: float, micro_batch: int, max_grad_norm: float,
               agg: str = "token-mean") -> dict[str, float]:
    """Run `epochs` PPO passes over the batch; returns its loss (first pass) and gradient norm (last pass)."""
    items = [Item(r.prompts[j], r.edits[e][j], r.advantages[e], r.old_logps[e][j]) for r in rollouts
             for e, j in r.segments()]
    active = [it for it in items if it.advantage != 0.0]
    tokens = sum(len(it.completion) for it in items)
    denominator = float(max(1, tokens if agg == "token-mean" else len(items)))
    params = policy.trainable_parameters()
    first_loss, grad_norm = 0.0, 0.0
    if not active:
        return {"loss": 0.0, "grad_norm": 0.0, "active": 0.0}
    policy.model.train()
    mb = max(1, micro_batch)
    with cpu_threads.for_training():
        for epoch in range(max(1, epochs)):
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for start in range(0, len(active), mb):
                loss = batch_loss(policy, active[start : start + mb], clip, agg, denominator)
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
                loss_sum += float(loss.detach())
            limit = max_grad_norm if max_grad_norm > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
            optimizer.step()
            if epoch == 0:
                first_loss = loss_sum
    policy.model.eval()
    return {"loss": first_loss, "grad_norm": grad_norm, "active": len(active) / len(items)}


def rollout_metrics(rollouts: Sequence[Rollout]) -> dict[str, float]:
    """Mean reward, mean delta (valid edits), valid fraction and KL to the base evolver of a batch."""
    kls = [kl_k3(o.unsqueeze(0), f.unsqueeze(0), torch.ones(1, len(o)))
           for ro in rollouts for e, j in ro.segments()
           if len(o := ro.old_logps[e][j]) and len(f := ro.ref_logps[e][j])]
    return {
        **summarize([r for ro in rollouts for r in ro.rewards]),
        "kl": sum(kls) / len(kls) if kls else 0.0,
        "tokens": float(sum(ro.tokens for ro in rollouts)),
    }
