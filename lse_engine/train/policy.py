"""The trainable evolver: a causal LM with a LoRA adapter (peft) or all of its weights trainable (full
fine-tuning, as the reference). Samples edits, scores token log-probs, and holds the PPO-clip loss and the
KL estimate used for reporting.

Sequences are laid out as in TRL: prompt left-padded, completion right-padded, so only the completion's
logits are computed (`logits_to_keep`). Log-probs are of the rollout distribution (logits / temperature).
The base evolver (the KL reference, and the task model with `task_model = "self"`) is the model with its
adapter switched off, or, under full fine-tuning, the untouched weights the trainable copy was made from.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from lse_engine.kinds import LOSS_AGGREGATIONS, TRAIN_METHODS
from lse_engine.llm.base import Chat, Sampling
from lse_engine.llm.transformers_backend import quiet_progress_bars

Pair = tuple[list[int], list[int]]  # (prompt ids, completion ids)
METHODS = TRAIN_METHODS
LOSS_AGG = LOSS_AGGREGATIONS


def lora_model(model: Any, r: int, alpha: int, dropout: float, adapter: str | Path | None = None) -> Any:
    """Wrap a base model with a trainable LoRA adapter: a fresh one, or one loaded from `adapter`."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def full_model(model: Any, checkpoint: str | Path | None = None) -> Any:
    """A trainable copy of every weight of `model` (which stays as it is: the base), or the weights saved
    in `checkpoint` (a directory written by `Policy.save`)."""
    if checkpoint:
        from transformers import AutoModelForCausalLM

        with quiet_progress_bars():
            trained = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=model.dtype)
        trained = trained.to(next(model.parameters()).device)
    else:
        trained = copy.deepcopy(model)
    trained.requires_grad_(True)
    return trained


class Policy:
    """The trainable evolver and its tokenizer: sampling and log-probs; the base evolver inside `base()`."""

    def __init__(self, model: Any, tokenizer: Any, temperature: float = 1.0,
                 render: Callable[[Chat], list[int]] | None = None, ref_model: Any = None) -> None:
        self.model = model  # trained: a peft model (LoRA) or a full copy
        self.ref_model = ref_model  # the base weights under full fine-tuning; None with LoRA (adapter off)
        self.tokenizer = tokenizer
        self.render = render  # the backend's chat → prompt ids: training sees the prompts `lse evolve` sends
        self.temperature = temperature if temperature > 0 else 1.0
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self._in_base = False

    @property
    def full(self) -> bool:
        return self.ref_model is not None

    @property
    def net(self) -> Any:
        """The module that generates and scores now: the trained one, or the base inside `base()`."""
        return self.ref_model if self._in_base and self.ref_model is not None else self.model

    @property
    def device(self) -> torch.device:
        first: torch.nn.Parameter = next(self.model.parameters())
        return first.device

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def base(self) -> Iterator[None]:
        """The base evolver: the adapter switched off, or the untouched weights under full fine-tuning."""
        if self.ref_model is not None:
            self._in_base = True
            try:
                yield
            finally:
                self._in_base = False
        else:
            with self.model.disable_adapter():
                yield

    def chat_ids(self, chat: Chat) -> list[int]:
        """Prompt ids of a chat as the evolver's backend renders it (a last assistant message: a prefill)."""
        if self.render is not None:
            return list(self.render(chat))
        prefill = bool(chat) and chat[-1].get("role") == "assistant"
        ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=not prefill,
                                                 continue_final_message=prefill, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def decode(self, ids: Sequence[int]) -> str:
        text: str = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return text

    def _cut(self, ids: list[int]) -> list[int]:
        """A completion up to and including its first end-of-sequence token (padding after it dropped)."""
        for i, t in enumerate(ids):
            if t in self.eos_ids:
                return ids[: i + 1]
        return ids

    @torch.no_grad()
    def sample(self, prompt_ids: list[int], n: int, sampling: Sampling, seed: int) -> list[list[int]]:
        """n completions of one prompt with `sampling`'s temperature, top-p and length (greedy at 0)."""
        net = self.net
        net.eval()
        torch.manual_seed(seed)
        ids = torch.tensor([prompt_ids] * n, device=self.device)
        greedy = sampling.temperature <= 0
        kwargs: dict[str, Any] = {}
        if not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        out = net.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=not greedy,
                           max_new_tokens=sampling.max_tokens, pad_token_id=self.pad_id, **kwargs)
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
        logits = self.net(input_ids=ids, attention_mask=mask, position_ids=positions,
                          logits_to_keep=c_len + 1).logits[:, :-1].float() / self.temperature
        target = ids[:, p_len:]
        picked = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return picked - torch.logsumexp(logits, dim=-1), mask[:, p_len:].float()

    def save(self, path: str | Path) -> None:
        """The adapter (LoRA) or the whole model with its tokenizer (full), loadable as an evolver."""
        with quiet_progress_bars():
            self.model.save_pretrained(str(path))
            if self.full:
                self.tokenizer.save_pretrained(str(path))


def ppo_loss(logps: torch.Tensor, old_logps: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
             clip: float, agg: str = "token-mean", denominator: float | None = None) -> torch.Tensor:
    """PPO-clip, no critic, no KL, aggregated as the reference's `loss_agg_mode`:

    - `token-mean`: the sum over every completion token / the number of tokens (of the whole batch when
      `denominator` gives it), so a long edit weighs by its length;
    - `seq-mean`: each edit's mean over its tokens, summed / the number of edits (`denominator`).

    A sequence whose advantage is 0 contributes exactly zero gradient.
    """
    if agg not in LOSS_AGG:
        raise ValueError(f"loss_agg must be one of {LOSS_AGG}, got {agg!r}")
    ratio = torch.exp(logps - old_logps)
    a = adv.unsqueeze(-1)
    per_token = -torch.min(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a) * mask
    if agg == "token-mean":
        return per_token.sum() / (denominator if denominator is not None else mask.sum().clamp(min=1))
    per_seq = per_token.sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.sum() / (denominator if denominator is not None else len(per_seq))


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean per-token KL(policy ‖ base), the k3 estimator on sampled tokens (for reporting only)."""
    d = ref_logps - logps
    k3 = torch.exp(d) - d - 1
    return float((k3 * mask).sum() / mask.sum().clamp(min=1))
