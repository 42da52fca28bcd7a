"""LLaMA-2 conversation prompts, their tokenization and label masking.

Mirrors, from the original code:
* ``Video_Instruct_Dataset.__getitem__`` + ``preprocess_multimodal`` (the first question becomes
  ``<Video>`` + ``<ImageHere>``·N + ``</Video> `` + msg + q) and ``preprocess_for_llama_v2``
  (LLAMA_2 rendering with system ``" "``, one tokenizer call with BOS and ``max_txt_len``
  truncation, and the label loop of `llama2_labels`);
* ``Conversation.get_prompt`` for ``SeparatorStyle.LLAMA_2`` (``conv_llava_llama_2``) and the batched
  ``Chat`` of ``conversation_video_batch.py``: ``upload_video_without_audio`` / ``ask`` /
  ``answer`` (prompt text, split at ``<ImageHere>``, segment ids with BOS on the first segment only,
  left-padded contexts and the answer post-processing).

The vicuna (``###``) template is not implemented: no TimeChat config uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from timechat.constants import EVAL_SYSTEM, IGNORE_INDEX, IMAGE_PLACEHOLDER, TRAIN_SYSTEM  # noqa: F401 (re-exported)
from timechat.data.settings import DataSettings

VIDEO_START, VIDEO_END = "<Video>", "</Video>"
ROLES = ("USER", "ASSISTANT")
INST_CLOSE = "[/INST] "


def num_video_tokens(num_frames: int, num_video_query_token: int = DataSettings.num_video_query_token,
                     stride: int = DataSettings.stride) -> int:
    """Visual tokens of a T-frame video: ``Nq · ceil(T / stride)``, or ``Nq`` if ``stride <= 0``."""
    if stride <= 0:
        return num_video_query_token
    return num_video_query_token * math.ceil(num_frames / stride)


def render_llama2(messages: Sequence[tuple[str, str | None]], system: str) -> str:
    """``Conversation.get_prompt`` for LLAMA_2: ``[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{q1} [/INST] {a1} </s><s>[INST] …``.

    Args:
        messages: (role, text) pairs alternating USER / ASSISTANT; an assistant text of ``None``
            renders nothing (the prompt then ends with ``[/INST]``).
        system: the system text (training ``" "``, evaluation `EVAL_SYSTEM`).
    """
    out = ""
    for i, (role, text) in enumerate(messages):
        if i == 0 and (not text or role != ROLES[0]):
            raise ValueError("the first message must be a non-empty user message")
        if not text:
            continue
        if i % 2 == 0:
            if i == 0:
                text = f"<<SYS>>\n{system}\n<</SYS>>\n\n" + text
            # every user turn is preceded by <s>; the original lstrips the very first one
            out += ("" if i == 0 else "<s>") + f"[INST] {text} [/INST]"
        else:
            out += " " + text + " " + "</s>"
    return out


# --------------------------------------------------------------------------- training
def build_train_messages(qa: Sequence[dict[str, str]], msg: str, n_video_tokens: int) -> list[dict[str, str]]:
    """``sources`` of the original: human/gpt turns, the video block and ``msg`` before the first question.

    Raises:
        ValueError: empty QA list or a pair without ``q``/``a`` strings.
    """
    if not qa:
        raise ValueError("record has no QA pairs")
    sources: list[dict[str, str]] = []
    for k, pair in enumerate(qa):
        q, a = pair.get("q"), pair.get("a")
        if not isinstance(q, str) or not isinstance(a, str):
            raise ValueError(f"QA pair {k} needs string 'q' and 'a', got {sorted(pair)}")
        if k == 0:
            q = VIDEO_START + IMAGE_PLACEHOLDER * n_video_tokens + VIDEO_END + " " + msg + q
        sources += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return sources


def render_train_conversation(sources: Sequence[dict[str, str]], system: str = TRAIN_SYSTEM) -> str:
    """The LLAMA_2 string ``preprocess_for_llama_v2`` tokenizes."""
    roles = {"human": ROLES[0], "gpt": ROLES[1]}
    messages = []
    for k, s in enumerate(sources):
        role = roles.get(s["from"])
        if role is None or role != ROLES[k % 2]:
            raise ValueError(f"turn {k}: expected {'human' if k % 2 == 0 else 'gpt'}, got {s['from']!r}")
        messages.append((role, s["value"]))
    return render_llama2(messages, system)


@dataclass
class MaskingRound:
    round_len: int
    instruction_len: int
    masked: tuple[int, int]


def llama2_labels(conversation: str, input_ids: Sequence[int], tokenizer: Any) -> tuple[list[int], list[MaskingRound]]:
    """Labels of ``preprocess_for_llama_v2``.

    Position 0 is ignored; for each ``</s>``-separated round with exactly one ``"[/INST] "``:
    ``instruction_len = len(tok(instr + "[/INST] ")) - 2`` tokens are ignored from ``cur``, then
    ``cur += len(tok(round))`` (both with BOS); everything from the final ``cur`` on is ignored.
    With the slow-LLaMA tokenizer this supervises exactly each answer plus ``▁ </s>``.

    Returns:
        (labels, per-round trace).
    """
    labels = list(input_ids)
    if labels:
        labels[0] = IGNORE_INDEX
    cur = 1
    trace: list[MaskingRound] = []
    for rnd in conversation.split("</s>"):
        if rnd == "":
            break
        parts = rnd.split(INST_CLOSE)
        if len(parts) != 2:
            break
        round_len = len(tokenizer.encode(rnd))
        instruction_len = len(tokenizer.encode(parts[0] + INST_CLOSE)) - 2
        for p in range(cur, min(cur + instruction_len, len(labels))):
            labels[p] = IGNORE_INDEX
        trace.append(MaskingRound(round_len, instruction_len, (cur, cur + instruction_len)))
        cur += round_len
    for p in range(cur, len(labels)):
        labels[p] = IGNORE_INDEX
    return labels, trace


@dataclass
class TrainText:
    """Tokenized training conversation of one sample.

    Attributes:
        conversation: the prompt string; sources: the human/gpt turns;
        input_ids / labels: (L,) lists, L <= max_txt_len; untruncated_length: L before the cut;
        n_video_tokens: placeholders written; n_video_tokens_kept: ``<ImageHere>`` ids left in input_ids.
    """

    conversation: str
    sources: list[dict[str, str]]
    input_ids: list[int]
    labels: list[int]
    untruncated_length: int
    n_video_tokens: int
    n_video_tokens_kept: int
    trace: list[MaskingRound] = field(default_factory=list)

    @property
    def placeholders_cut(self) -> bool:
        """True when truncation removed some ``<ImageHere>`` ids (the model forward would fail)."""
        return self.n_video_tokens_kept != self.n_video_tokens


def build_train_text(
    qa: Sequence[dict[str, str]],
    msg: str,
    num_frames: int,
    tokenizer: Any,
    num_video_query_token: int = DataSettings.num_video_query_token,
    stride: int = DataSettings.stride,
    max_txt_len: int = DataSettings.max_txt_len,
    system: str = TRAIN_SYSTEM,
) -> TrainText:
    """Prompt, ``input_ids`` (BOS, cut at ``max_txt_len``, no EOS) and labels of one training record."""
    n_tok = num_video_tokens(num_frames, num_video_query_token, stride)
    sources = build_train_messages(qa, msg, n_tok)
    conversation = render_train_conversation(sources, system)
    full = tokenizer.encode(conversation)
    input_ids = full[:max_txt_len]
    labels, trace = llama2_labels(conversation, input_ids, tokenizer)
    kept = sum(1 for i in input_ids if i == tokenizer.image_token_id)
    return TrainText(conversation, sources, input_ids, labels, len(full), n_tok, kept, trace)


# --------------------------------------------------------------------------- inference
@dataclass
class ChatState:
    """The conversation ``Chat`` keeps per video (``conv_llava_llama_2`` with evaluate.py's system).

    Use `upload_video` once, then `ask` / `prompt_for_answer` / `set_answer` per round.
    """

    system: str = EVAL_SYSTEM
    messages: list[list[Any]] = field(default_factory=list)

    def upload_video(self, msg: str) -> None:
        """``Chat.upload_video_without_audio``: user message ``<Video><ImageHere></Video> {msg}``."""
        self.messages.append([ROLES[0], VIDEO_START + IMAGE_PLACEHOLDER + VIDEO_END + " " + msg])

    def ask(self, text: str) -> None:
        """``Chat.ask``: join to the pending video message with one space, else a new user turn."""
        if self.messages and self.messages[-1][0] == ROLES[0] and VIDEO_END in (self.messages[-1][1] or ""):
            self.messages[-1][1] = " ".join([self.messages[-1][1], text])
        else:
            self.messages.append([ROLES[0], text])

    def prompt_for_answer(self) -> str:
        """``Chat.answer``: append an empty assistant turn and render (ends with ``[/INST]``)."""
        self.messages.append([ROLES[1], None])
        return render_llama2([tuple(m) for m in self.messages], self.system)

    def set_answer(self, text: str) -> None:
        """Store the post-processed answer as the last assistant turn (used by the next round)."""
        if not self.messages or self.messages[-1][0] != ROLES[1]:
            raise ValueError("set_answer called without a pending assistant turn")
        self.messages[-1][1] = text


def split_prompt(prompt: str) -> list[str]:
    """``prompt.split('<ImageHere>')`` (``Chat.get_context_emb``)."""
    return prompt.split(IMAGE_PLACEHOLDER)


def segment_ids(prompt: str, tokenizer: Any) -> list[list[int]]:
    """Token ids of each segment around ``<ImageHere>``: BOS on segment 0 only."""
    return [tokenizer.encode(seg, add_special_tokens=(i == 0)) for i, seg in enumerate(split_prompt(prompt))]


def postprocess_answer(ids: Sequence[int], tokenizer: Any) -> str:
    """``Chat.answer`` post-processing of one generated row.

    Drop a leading 0, then a leading 1; decode (specials kept); keep the text before the first
    ``</s>``; keep the text after the last ``ASSISTANT:``; strip.
    """
    ids = [int(i) for i in ids]
    if ids and ids[0] == 0:
        ids = ids[1:]
    if ids and ids[0] == 1:
        ids = ids[1:]
    text = tokenizer.decode(ids)
    text = text.split("</s>")[0]
    return text.split(ROLES[1] + ":")[-1].strip()
