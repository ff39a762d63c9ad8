"""The trainable evolver: a causal LM with a LoRA adapter (peft). Samples edits, scores token log-probs,
and holds the PPO-clip loss and the KL estimate used for reporting.

Sequences are laid out as in TRL: prompt left-padded, completion right-padded, so only the completion's
logits are computed (`logits_to_keep`). Log-probs are of the sampling distribution (logits / temperature).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from lse_engine.llm.base import Chat, Sampling
from lse_engine.llm.transformers_backend import quiet_progress_bars

Pair = tuple[list[int], list[int]]  # (prompt ids, completion ids)


def lora_model(model: Any, r: int, alpha: int, dropout: float, adapter: str | Path | None = None) -> Any:
    """Wrap a base model with a trainable LoRA adapter: a fresh one, or one loaded from `adapter`."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


class Policy:
    """A peft model and its tokenizer; sampling and log-probs with the adapter on or off."""

    def __init__(self, model: Any, tokenizer: Any, temperature: float = 1.0,
                 render: Callable[[Chat], list[int]] | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.render = render  # the backend's chat → prompt ids, so training sees the prompts `lse evolve` sends
        self.temperature = temperature if temperature > 0 else 1.0
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def base(self) -> Iterator[None]:
        """The base model: the adapter switched off (task answers with `task_model = "self"`, KL reference)."""
        with self.model.disable_adapter():
            yield

    def chat_ids(self, chat: Chat) -> list[int]:
        if self.render is not None:
            return list(self.render(chat))
        ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _cut(self, ids: list[int]) -> list[int]:
        """A completion up to and including its first end-of-sequence token."""
        for i, t in enumerate(ids):
            if t in self.eos_ids:
                return ids[: i + 1]
        return ids

    @torch.no_grad()
    def sample(self, prompt_ids: list[int], n: int, sampling: Sampling, seed: int) -> list[list[int]]:
        """n completions of one prompt (with the adapter as it currently is)."""
        self.model.eval()
        torch.manual_seed(seed)
        ids = torch.tensor([prompt_ids] * n, device=self.device)
        out = self.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=self.temperature,
            top_p=sampling.top_p, top_k=0, max_new_tokens=sampling.max_tokens, pad_token_id=self.pad_id,
        )
        return [self._cut(row[len(prompt_ids):].tolist()) for row in out]

    def token_logps(self, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs of each completion given its prompt, and the completion mask: [B, C] each."""
        p_len = max(len(p) for p, _ in pairs)
        c_len = max(1, max(len(c) for _, c in pairs))
        ids = torch.full((len(pairs), p_len + c_len), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (p, c) in enumerate(pairs):
            ids[i, p_len - len(p) : p_len] = torch.tensor(p)
            mask[i, p_len - len(p) : p_len] = 1
            if c:
                ids[i, p_len : p_len + len(c)] = torch.tensor(c)
                mask[i, p_len : p_len + len(c)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                            logits_to_keep=c_len + 1).logits[:, :-1].float() / self.temperature
        target = ids[:, p_len:]
        picked = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return picked - torch.logsumexp(logits, dim=-1), mask[:, p_len:].float()

    def save(self, path: str | Path) -> None:
        with quiet_progress_bars():
            self.model.save_pretrained(str(path))


def ppo_loss(logps: torch.Tensor, old_logps: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
             clip: float) -> torch.Tensor:
    """PPO-clip, no critic, no KL: per sequence the mean over its tokens, then the mean over sequences.

    A sequence whose advantage is 0 contributes exactly zero gradient.
    """
    ratio = torch.exp(logps - old_logps)
    a = adv.unsqueeze(-1)
    per_token = -torch.min(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a)
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.mean()


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean per-token KL(policy ‖ base), the k3 estimator on sampled tokens (for reporting only)."""
    d = ref_logps - logps
    k3 = torch.exp(d) - d - 1
    return float((k3 * mask).sum() / mask.sum().clamp(min=1))
