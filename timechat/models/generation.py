"""Batched decoding from prompt embeddings with a KV cache (original: HF `generate` in `Chat.answer`).

The original sampled (top_p 0.8, temperature 1) and so gave different numbers on every run; the
default here is greedy. Sampling stays available, seeded, to compare with its numbers.

Left padding follows the original's batched chat: padded rows have mask 0 and position ids come
from `cumsum(mask) - 1` (padding positions set to 1), exactly what HF computed for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import inspect
import logging

import torch
from transformers import DynamicCache, LlamaForCausalLM

# transformers 5.x renames `past_key_values` to `cache`; use whichever this version accepts.
_CACHE_KW = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"
logger = logging.getLogger(__name__)


class ContextOverflowError(ValueError):
    """A prompt does not fit the decoding context without losing video tokens."""


@dataclass
class GenerationConfig:
    """Decoding settings. The defaults are deterministic (greedy)."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    eos_token_id: int = 2
    pad_token_id: int = 0
    seed: int = 42
    """Seed of the sampling generator (only used with do_sample)."""
    max_context: int = 3000
    """Context cap; longer prompts are cut from the left, like the original's `max_length` 3000
    (`check_context` refuses a cut that would reach the video tokens)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("generation.max_new_tokens must be >= 1")
        if self.do_sample and (self.temperature <= 0 or not 0 < self.top_p <= 1):
            raise ValueError("sampling needs temperature > 0 and 0 < top_p <= 1")


@dataclass
class GenerationOutput:
    sequences: torch.Tensor  # (B, n_steps) generated ids; after EOS filled with pad
    scores: list[torch.Tensor] = field(default_factory=list)  # per step (B, V) logits, if kept
    prefill_logits: torch.Tensor | None = None  # (B, L, V), if kept


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches `top_p` (HF TopPLogitsWarper)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_idx = torch.sort(logits, descending=False)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cum <= (1 - top_p)
    remove_sorted[..., -1:] = False  # always keep the best token
    remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def left_cut(lengths: Sequence[int], cfg: GenerationConfig) -> list[int]:
    """Real tokens `generate` cuts from the left of each row of a left-padded batch.

    The batch is padded to ``L = max(lengths)``; when ``L + max_new_tokens > max_context`` the first
    ``L - max(1, max_context - max_new_tokens)`` positions go, padding first.
    """
    padded = max(lengths)
    if padded + cfg.max_new_tokens <= cfg.max_context:
        return [0] * len(lengths)
    cut = padded - max(1, cfg.max_context - cfg.max_new_tokens)
    return [max(0, cut - (padded - n)) for n in lengths]


def check_context(prompts: Sequence[tuple[int, int, int]], cfg: GenerationConfig, max_positions: int | None = None,
                  names: Sequence[str] | None = None) -> None:
    """Check, before decoding, that the left cut of `generate` leaves every video token in place.

    The original cut any prompt longer than ``max_length - max_new_tokens`` from the left, video
    tokens included. Here a cut that stays in the text before the video (system prompt) is kept
    as the original's behaviour, with a warning; a cut that would reach the video is an error.
    A prompt longer than the LLM's positions (`max_positions`) gets a warning: it decodes, but past
    the positions the LLM was trained on.

    Args:
        prompts: per row (text tokens before the video, video tokens, text tokens after it).
        cfg: the decoding settings (`max_context`, `max_new_tokens`).
        max_positions: the LLM's ``max_position_embeddings`` (None: not checked).
        names: per row, a name for the messages (e.g. the sample id).
    Raises:
        ContextOverflowError: naming the row, its token counts and the cap.
    """
    lengths = [sum(p) for p in prompts]
    for i, ((before, video, after), n, cut) in enumerate(zip(prompts, lengths, left_cut(lengths, cfg))):
        name = names[i] if names is not None else f"row {i}"
        counts = (f"{n} prompt tokens ({before} text + {video} video + {after} text) + max_new_tokens "
                  f"{cfg.max_new_tokens}")
        if cut > before:
            raise ContextOverflowError(
                f"{name}: {counts} exceed max_context {cfg.max_context} (batch padded to {max(lengths)}); the "
                f"left cut of {cut} tokens would drop {min(video, cut - before)} video tokens. Sample fewer frames "
                "(eval.num_frames / eval.max_frames / eval.fps) or raise eval.max_context"
                + (f" (the LLM has {max_positions} positions)" if max_positions else "")
            )
        if cut:
            logger.warning("%s: %s exceed max_context %d; the first %d text tokens are cut (as the original did)",
                           name, counts, cfg.max_context, cut)
        if max_positions is not None and n - cut + cfg.max_new_tokens > max_positions:
            logger.warning("%s: %s reach past the LLM's %d positions (max_position_embeddings)", name, counts,
                           max_positions)


@torch.no_grad()
def generate(
    llm: torch.nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    cfg: GenerationConfig,
    *,
    keep_scores: bool = False,
    keep_prefill_logits: bool = False,
    on_token: Callable[[torch.Tensor], None] | None = None,
) -> GenerationOutput:
    """Decode from left-padded context embeddings.

    Args:
        llm: a causal LM taking `inputs_embeds` (LLaMA, optionally under peft).
        inputs_embeds: (B, L, D) context, left padded.
        attention_mask: (B, L) 1 for real positions.
        cfg: decoding settings.
        on_token: called with each step's (B,) ids as soon as they are chosen (streaming); it
            does not change what is decoded.
    Returns:
        `GenerationOutput`; finished rows are filled with `pad_token_id` after their EOS.
    """
    if inputs_embeds.shape[1] + cfg.max_new_tokens > cfg.max_context:
        keep = max(1, cfg.max_context - cfg.max_new_tokens)
        inputs_embeds, attention_mask = inputs_embeds[:, -keep:], attention_mask[:, -keep:]
    embed = llm.get_input_embeddings()
    device = inputs_embeds.device
    attention_mask = attention_mask.to(device=device, dtype=torch.long)
    position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
    cache = DynamicCache()
    # Only the last position's logits are needed to decode; (B, L, V) logits of a long batched
    # context would cost gigabytes.
    keep = {} if keep_prefill_logits else {"logits_to_keep": 1}
    out = llm(inputs_embeds=inputs_embeds.to(embed.weight.dtype), attention_mask=attention_mask,
              position_ids=position_ids, use_cache=True, **keep, **{_CACHE_KW: cache})
    prefill = out.logits if keep_prefill_logits else None
    logits = out.logits[:, -1].float()  # the DynamicCache is filled in place
    generator = None
    if cfg.do_sample:
        generator = torch.Generator(device=device)
        generator.manual_seed(cfg.seed)
    b = inputs_embeds.shape[0]
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    tokens, scores = [], []
    next_pos = position_ids[:, -1:] + 1
    for step in range(cfg.max_new_tokens):
        if keep_scores:
            scores.append(logits)
        if cfg.do_sample:
            probs = _top_p_filter(logits / cfg.temperature, cfg.top_p).softmax(-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            nxt = logits.argmax(-1)
        nxt = nxt.masked_fill(finished, cfg.pad_token_id)
        tokens.append(nxt)
        if on_token is not None:
            on_token(nxt)
        finished |= nxt == cfg.eos_token_id
        if bool(finished.all()) or step == cfg.max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(b, 1)], dim=1)
        out = llm(inputs_embeds=embed(nxt[:, None]), attention_mask=attention_mask, position_ids=next_pos,
                  use_cache=True, **{_CACHE_KW: cache})
        logits = out.logits[:, -1].float()
        next_pos = next_pos + 1
    return GenerationOutput(torch.stack(tokens, dim=1), scores, prefill)
