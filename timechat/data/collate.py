"""Batch collation for training and the timestamp tokenization of batched inference.

Mirrors ``Video_Instruct_Dataset.collater`` (right padding: ids 0, labels −100,
``attention_mask = input_ids != 0``; stacked images and re-padded timestamp rows when every video
tensor has the same shape, lists otherwise; ``conv_type = 'multi'``) and the timestamp
tokenization of the batched ``Chat.upload_video_without_audio`` (one call over all videos' sentences
when every video has the same frame count, else one call per video).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from timechat.constants import IGNORE_INDEX, PAD_TOKEN_ID
from timechat.data.tokenization import DEFAULT_TIMESTAMP_MAX_LENGTH, tokenize_timestamps

def pad_right(rows: Sequence[torch.Tensor], value: int) -> torch.Tensor:
    """Right-pad 1-D (L_i,) or 2-D (N_i, L_i) long tensors along the last dim and stack/concat.

    1-D rows are stacked to (B, L); 2-D rows are concatenated along dim 0 to (ΣN_i, L).
    """
    width = max(int(r.shape[-1]) for r in rows)
    padded = [torch.nn.functional.pad(r, (0, width - int(r.shape[-1])), value=value) for r in rows]
    return torch.stack(padded) if rows[0].dim() == 1 else torch.cat(padded, dim=0)


def collate_train(samples: Sequence[dict[str, Any]], pad_token_id: int = PAD_TOKEN_ID) -> dict[str, Any]:
    """Collate dataset items (``input_ids``/``labels`` (L,), ``images`` (C,T,H,W), ``timestamps``).

    Returns:
        ``input_ids`` (B, L) long, ``labels`` (B, L) long, ``attention_mask`` (B, L) long
        (``input_ids != pad``, so a real ``<unk>`` id 0 is masked too, as in the original),
        ``images`` (B, C, T, H, W) or a list, ``timestamps`` ``{'input_ids', 'attention_mask'}`` of
        shape (ΣT, L_ts) or a list of per-sample dicts, ``conv_type`` ``'multi'``, ``ids``, and when
        every item has its ``clip``, ``frame_times``: per sample the (T,) sampled frames' times in seconds;
        when some item has them, ``frame_words``: per sample its per-frame token-id lists (or None).
    """
    if not samples:
        raise ValueError("collate_train: empty batch")
    input_ids = pad_right([torch.as_tensor(s["input_ids"], dtype=torch.long) for s in samples], pad_token_id)
    labels = pad_right([torch.as_tensor(s["labels"], dtype=torch.long) for s in samples], IGNORE_INDEX)
    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": input_ids.ne(pad_token_id).long(),
        "conv_type": "multi",
        "ids": [s.get("id") for s in samples],
    }
    clips = [s.get("clip") for s in samples]
    if all(c is not None for c in clips):  # per sample (T_i,) seconds: targets of the frame-time loss
        batch["frame_times"] = [torch.tensor(c.indices, dtype=torch.float64).div(c.fps) for c in clips]
    if any("frame_words" in s for s in samples):  # per sample, per frame token ids (or None): frame-text loss targets
        batch["frame_words"] = [s.get("frame_words") for s in samples]
    if any("data_errors" in s for s in samples):
        from timechat.stats import IssueStats

        batch["data_errors"] = IssueStats.merged([s["data_errors"] for s in samples if "data_errors" in s]).to_dict()
    images = [s["images"] for s in samples]
    if all(img.shape == images[0].shape for img in images):
        batch["images"] = torch.stack(images)  # (B, C, T, H, W)
        ts = [s["timestamps"] for s in samples]
        batch["timestamps"] = {
            "input_ids": pad_right([torch.as_tensor(t["input_ids"]) for t in ts], 0),  # (ΣT, L_ts)
            "attention_mask": pad_right([torch.as_tensor(t["attention_mask"]) for t in ts], 0),
        }
        batch["collate_path"] = "stacked"
    else:
        batch["images"] = images
        batch["timestamps"] = [s["timestamps"] for s in samples]
        batch["collate_path"] = "list"
    return batch


@dataclass
class TimestampCalls:
    """Timestamp tokens of an inference batch.

    Attributes:
        path: ``'batched'`` (one call over all B·T sentences) or ``'per_video'``.
        calls: the tokenizer outputs, each ``{'input_ids', 'attention_mask'}`` (rows, L).
        frames: frames per video.
    """

    path: str
    calls: list[dict[str, torch.Tensor]]
    frames: list[int]

    def per_video(self) -> list[dict[str, torch.Tensor]]:
        """Rows of each video (T_b, L) in batch order."""
        if self.path == "per_video":
            return self.calls
        out, start = [], 0
        for t in self.frames:
            out.append({k: v[start : start + t] for k, v in self.calls[0].items()})
            start += t
        return out


def inference_timestamps(
    sentences: Sequence[Sequence[str]], tokenizer: Any, max_length: int = DEFAULT_TIMESTAMP_MAX_LENGTH
) -> TimestampCalls:
    """Tokenize per-video timestamp sentences as the batched ``Chat`` does."""
    frames = [len(s) for s in sentences]
    if len(set(frames)) == 1:
        flat = [x for s in sentences for x in s]
        return TimestampCalls("batched", [tokenize_timestamps(flat, tokenizer, max_length)], frames)
    return TimestampCalls("per_video", [tokenize_timestamps(s, tokenizer, max_length) for s in sentences], frames)
