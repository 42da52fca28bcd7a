"""Instruction datasets and bad-data accounting.

Mirrors ``Video_Instruct_Dataset`` of the original (``timechat/datasets/datasets/video_instruct_dataset.py``:
TimeIT-format records → frames, timestamps, prompt, ids, labels), ``utils/process_valley.py``
(Valley conversations → TimeIT records) and the ASR injection of ``utils/asr/asr_data_process.py``.
The evaluation annotation files (spec §3.11) are read by their tasks in `timechat.eval.tasks`. The
``MultiIterLoader`` mixing of several datasets (spec §4.7) lives in `timechat.train.mixing`.

Bad data is handled explicitly instead of the original's bare ``except`` + random retry: each
failure is a `SampleError` with a reason, counted in a `timechat.stats.IssueStats` (mergeable
across workers and ranks), and replaced by a deterministic other index up to ``max_retries`` times;
past ``max_failure_rate`` the dataset raises `DataQualityError`.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from timechat.constants import IGNORE_INDEX
from timechat.data.asr import inject_asr
from timechat.data.conversation import TrainText, build_train_text
from timechat.data.settings import DataSettings, data_settings
from timechat.data.tokenization import LlamaTokenizer, tokenize_timestamps
from timechat.data.transforms import eval_transform, train_transform
from timechat.data.video import VideoDecodeError, load_video
from timechat.io import DataFileError, read_json
from timechat.stats import IssueStats

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- errors and stats
class SampleError(Exception):
    """One sample cannot be used. ``reason`` is a short key (``video_missing``, ``bad_record``, ...)."""

    def __init__(self, sample_id: str, reason: str, detail: str = "") -> None:
        self.sample_id, self.reason, self.detail = sample_id, reason, detail
        super().__init__(f"sample {sample_id}: {reason}" + (f" ({detail})" if detail else ""))


class DataQualityError(RuntimeError):
    """Too many samples failed (failure rate above the configured limit, or retries exhausted)."""


MIN_ATTEMPTS_FOR_RATE = 100
"""Attempts counted before the failure rate is judged (a few bad videos early on do not abort)."""

AUDIT_HINT = ("to train only on usable records, filter the records file first: "
              "python -m timechat.data.prepare audit RECORDS.json VIDEOS_ROOT USABLE.json")
"""The fix named by every too-many-bad-samples error (`timechat.data.prepare.audit`)."""


def check_failure_rate(stats: IssueStats, max_failure_rate: float, where: str,
                       min_attempts: int = MIN_ATTEMPTS_FOR_RATE) -> None:
    """Raise `DataQualityError` when more than `max_failure_rate` of at least `min_attempts` attempts failed.

    Args:
        stats: the counts so far (one dataset's, or a training run's over all datasets and ranks).
        max_failure_rate: the limit (e.g. ``run.max_failure_rate``).
        where: what the counts are about, for the message (``dataset X``, ``run.max_failure_rate``).
        min_attempts: judge only from this many attempts on.
    """
    if stats.attempts >= min_attempts and stats.failure_rate > max_failure_rate:
        raise DataQualityError(f"{where}: failure rate above {max_failure_rate:.1%} (too many bad samples): "
                               f"{stats.summary()}; examples {stats.examples}; {AUDIT_HINT}")


# --------------------------------------------------------------------------- record formats
def _not_utf8_at(text: str) -> int | None:
    """Index of the first character that cannot be written as UTF-8 (a lone surrogate such as the
    ``"\\ud800"`` a JSON escape can produce), or None. SentencePiece, logs and result files all need UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def printable_id(text: str) -> str:
    """``text`` with characters that UTF-8 cannot hold written as escapes (safe in logs and JSON)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def validate_record(record: Any, sample_id: str) -> dict[str, Any]:
    """Check a TimeIT record ``{"video": str, "QA": [{"q": str, "a": str}, ...]}``.

    The one check of a record's structure and text, run by every item builder (live and cached).

    Raises:
        SampleError: ``bad_record`` naming the problem; ``bad_text`` for a string that is not valid
        Unicode text (it names the field and the character position, never the text itself).
    """
    if not isinstance(record, dict):
        raise SampleError(sample_id, "bad_record", f"record is {type(record).__name__}, not an object")
    video = record.get("video")
    if not isinstance(video, str) or not video:
        raise SampleError(sample_id, "bad_record", "missing or empty 'video'")
    qa = record.get("QA")
    if not isinstance(qa, list) or not qa:
        raise SampleError(sample_id, "bad_record", "missing or empty 'QA'")
    for k, pair in enumerate(qa):
        if not isinstance(pair, dict) or not isinstance(pair.get("q"), str) or not isinstance(pair.get("a"), str):
            raise SampleError(sample_id, "bad_record", f"QA[{k}] needs string 'q' and 'a'")
        if not pair["q"].strip() or not pair["a"].strip():
            raise SampleError(sample_id, "bad_record", f"QA[{k}] has an empty 'q' or 'a'")
    timed = record.get("timed_text")
    if timed is not None:
        if not isinstance(timed, list):
            raise SampleError(sample_id, "bad_record", "'timed_text' must be a list of [start, end, text]")
        for k, entry in enumerate(timed):
            ok = (isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[2], str)
                  and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in entry[:2]))
            if not ok or not entry[0] <= entry[1] or not entry[2].strip():
                raise SampleError(sample_id, "bad_record",
                                  f"timed_text[{k}] must be [start, end, text] with start <= end and some text")
    fields = [("video", video)] + [(f"QA[{k}].{key}", pair[key]) for k, pair in enumerate(qa) for key in ("q", "a")]
    for where, text in fields:
        at = _not_utf8_at(text)
        if at is not None:
            raise SampleError(sample_id, "bad_text",
                              f"{where} has a lone surrogate U+{ord(text[at]):04X} at character {at} (not valid Unicode text)")
    return record


def frame_text_ids(record: dict[str, Any], indices: Sequence[int], fps: float,
                   tokenizer: LlamaTokenizer) -> list[list[int]] | None:
    """Per sampled frame, the token ids (no BOS) of the record's ``timed_text`` entries whose span
    ``start <= t < end`` holds the frame's time ``t = index / fps``; None when the record has none.
    The targets of ``model.frame_text_loss_weight``."""
    timed = record.get("timed_text")
    if timed is None:
        return None
    pieces = [(float(s), float(e), tokenizer.encode(text, add_special_tokens=False)) for s, e, text in timed]
    frames = []
    for index in indices:
        t = index / fps
        frames.append(sorted({i for s, e, ids in pieces if s <= t < e for i in ids}))
    return frames


def check_built_sample(sample_id: str, text: TrainText, n_frames: int, settings: DataSettings, *,
                       allow_truncated: bool = False) -> None:
    """The checks of a built sample, shared by the live and the cached item builders.

    Args:
        allow_truncated: accept what ``max_txt_len`` made unusable for training (the reference
            comparison rebuilds such items exactly as the original did).

    Raises:
        SampleError: ``too_few_frames`` (fewer frames than ``min_video_frames``); unless ``allow_truncated``:
        ``placeholders_truncated`` (``max_txt_len`` cut some ``<ImageHere>``), ``no_supervised_tokens``
        (``max_txt_len`` cut every answer token: nothing to learn from).
    """
    st = settings
    if n_frames < st.min_video_frames:
        raise SampleError(sample_id, "too_few_frames", f"{n_frames} frame(s) decoded, min_video_frames={st.min_video_frames}")
    if allow_truncated:
        return
    if text.placeholders_cut:
        raise SampleError(
            sample_id,
            "placeholders_truncated",
            f"max_txt_len={st.max_txt_len} keeps {text.n_video_tokens_kept} of {text.n_video_tokens} <ImageHere> (untruncated {text.untruncated_length} tokens)",
        )
    if all(label == IGNORE_INDEX for label in text.labels):
        raise SampleError(sample_id, "no_supervised_tokens",
                          f"max_txt_len={st.max_txt_len} keeps {len(text.input_ids)} of {text.untruncated_length} tokens, "
                          "no answer token among them")


def load_json_records(path: str | Path) -> list[Any]:
    """A JSON list (TimeIT/Valley files).

    Raises:
        DataFileError: (a ``ValueError``) naming the file: unreadable, not UTF-8, not JSON (with the
        position), or not a list.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFileError(path, f"expected a JSON list of records, got {type(data).__name__}")
    return data


def convert_valley_record(raw: dict[str, Any]) -> dict[str, Any]:
    """Valley ``conversations`` (human/gpt alternating) → TimeIT ``{"video", "QA", "source"}``.

    The ``<video>`` marker is removed in the forms ``<video>\\n`` and ``\\n<video>`` (as
    ``process_valley.py``); the video path is kept as given (make it relative to the videos root).
    """
    conv = raw.get("conversations")
    if not isinstance(conv, list) or len(conv) < 2:
        raise ValueError(f"Valley item {raw.get('id', raw.get('v_id'))}: needs >= 2 'conversations'")
    qa = []
    for k in range(0, len(conv) - 1, 2):
        h, g = conv[k], conv[k + 1]
        if h.get("from") != "human" or g.get("from") != "gpt":
            raise ValueError(f"Valley item {raw.get('id', raw.get('v_id'))}: turn {k} is not a human/gpt pair")
        q = h["value"].replace("<video>\n", "").replace("\n<video>", "").replace("<video>", "")
        qa.append({"q": q, "a": g["value"]})
    return {"video": raw["video"], "QA": qa, "source": raw.get("source", "valley")}


def with_asr(record: dict[str, Any], transcript: str) -> dict[str, Any]:
    """Copy of a record whose questions are prefixed with the transcript (`inject_asr`)."""
    return {**record, "QA": [{**p, "q": inject_asr(p["q"], transcript)} for p in record["QA"]]}


# --------------------------------------------------------------------------- one training sample
def build_train_item(
    record: dict[str, Any],
    video_path: str | Path,
    llama_tokenizer: LlamaTokenizer,
    timestamp_tokenizer: Any,
    *,
    sample_id: str,
    settings: DataSettings | None = None,
    rng: random.Random | None = None,
    np_rng: Any = None,
    torch_gen: torch.Generator | None = None,
    allow_cut_placeholders: bool = False,
    **setting_values: Any,
) -> dict[str, Any]:
    """Everything ``Video_Instruct_Dataset.__getitem__`` returns for one record (+ debug fields).

    Args:
        settings: frames, sizes, sampling, augmentation, text length (`DataSettings`); or give
            its fields as keywords (``setting_values``, e.g. ``num_frames=8``), not both.
        rng / np_rng / torch_gen: frame sampling and crop randomness (see `load_video`).
        allow_cut_placeholders: return items that ``max_txt_len`` made unusable (``<ImageHere>`` ids or
            every answer token cut), as the original does (the reference comparison needs them).

    Returns:
        ``images`` (C, T, H, W) float32, ``input_ids`` / ``labels`` (L,) long, ``timestamps``
        ``{'input_ids','attention_mask'}`` (T, L_ts), ``id``, ``clip`` (`VideoClip`), ``text`` (`TrainText`).

    Raises:
        SampleError: ``video_missing``/``video_undecodable``/``video_empty``, ``bad_record``,
        ``bad_text`` (`validate_record`), ``too_few_frames``, and unless ``allow_cut_placeholders``
        ``placeholders_truncated`` and ``no_supervised_tokens`` (`check_built_sample`).
    """
    st = data_settings(settings, setting_values, "build_train_item")
    record = validate_record(record, sample_id)
    try:
        clip = load_video(video_path, st.frame_budget, st.image_size, st.image_size, st.sampling, rng, np_rng)
    except VideoDecodeError as exc:
        reason = {"missing": "video_missing", "empty": "video_empty"}.get(exc.reason, "video_undecodable")
        raise SampleError(sample_id, reason, str(exc)) from exc
    if st.train_aug:
        images = train_transform(clip.frames, generator=torch_gen)
    else:
        images = eval_transform(clip.frames)
    text = build_train_text(record["QA"], clip.msg, images.shape[1], llama_tokenizer, st.num_video_query_token, st.stride,
                            st.max_txt_len)
    check_built_sample(sample_id, text, len(clip.indices), st, allow_truncated=allow_cut_placeholders)
    item = {
        "id": sample_id,
        "images": images,
        "input_ids": torch.tensor(text.input_ids, dtype=torch.long),
        "labels": torch.tensor(text.labels, dtype=torch.long),
        "timestamps": tokenize_timestamps(clip.sentences, timestamp_tokenizer),
        "clip": clip,
        "text": text,
    }
    words = frame_text_ids(record, clip.indices, clip.fps, llama_tokenizer)
    return item if words is None else {**item, "frame_words": words}


class VideoInstructDataset(torch.utils.data.Dataset):
    """Map-style TimeIT/Valley instruction dataset (``Video_Instruct_Dataset``).

    Args:
        records: a list of TimeIT records or the path of a JSON list.
        videos_root: folder the records' ``video`` paths are relative to.
        llama_tokenizer: prompt tokenizer.
        timestamp_tokenizer: ``'llama'`` (the LLaMA tokenizer, what the released checkpoint was
            trained with), ``'bert'`` (then ``bert_tokenizer`` is required) or a tokenizer object.
        settings: frames, sizes, sampling, augmentation, text length (`DataSettings`); or give its
            fields as keywords (``setting_values``: the config's ``num_frames``, ``image_size``, ...;
            the former ``n_frms`` is read with a warning), not both.
        seed: base seed; item i of epoch e uses RNGs seeded from (seed, e, i), so training is
            reproducible and independent of worker assignment. Call `set_epoch` each epoch.
        max_retries: substitute indices tried after a failure before raising.
        max_failure_rate / min_attempts_for_rate: raise `DataQualityError` when more than this
            fraction of the attempts (after at least ``min_attempts_for_rate``) failed.
    """

    def __init__(
        self,
        records: Sequence[dict[str, Any]] | str | Path,
        videos_root: str | Path,
        llama_tokenizer: LlamaTokenizer,
        timestamp_tokenizer: str | Any = "llama",
        bert_tokenizer: Any = None,
        *,
        settings: DataSettings | None = None,
        seed: int = 42,
        max_retries: int = 10,
        max_failure_rate: float = 0.05,
        min_attempts_for_rate: int = MIN_ATTEMPTS_FOR_RATE,
        name: str = "timeit",
        **setting_values: Any,
    ) -> None:
        self.source = str(records) if isinstance(records, (str, Path)) else name
        self.records = load_json_records(records) if isinstance(records, (str, Path)) else list(records)
        if not self.records:
            raise ValueError(f"dataset {self.source} has no records")
        self.videos_root = Path(videos_root)
        self.llama_tokenizer = llama_tokenizer
        if timestamp_tokenizer == "llama":
            self.timestamp_tokenizer = llama_tokenizer
        elif timestamp_tokenizer == "bert":
            if bert_tokenizer is None:
                raise ValueError("timestamp_tokenizer='bert' needs bert_tokenizer")
            self.timestamp_tokenizer = bert_tokenizer
        elif isinstance(timestamp_tokenizer, str):
            raise ValueError(f"timestamp_tokenizer must be 'llama', 'bert' or a tokenizer, got {timestamp_tokenizer!r}")
        else:
            self.timestamp_tokenizer = timestamp_tokenizer
        self.settings = data_settings(settings, setting_values, f"datasets.{name}")
        self.seed, self.epoch = seed, 0
        self.max_retries, self.max_failure_rate, self.min_attempts_for_rate = max_retries, max_failure_rate, min_attempts_for_rate
        self.name = name
        self.stats = IssueStats()

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def sample_id(self, index: int) -> str:
        rec = self.records[index]
        video = rec.get("video", "?") if isinstance(rec, dict) else "?"
        return printable_id(f"{self.name}[{index}]:{video}")

    def rngs(self, index: int) -> tuple[random.Random, np.random.RandomState, torch.Generator]:
        """Per-item RNGs: Python (bins), numpy (fallback permutation), torch (crop box)."""
        s = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index
        return random.Random(s), np.random.RandomState(s % (2**32)), torch.Generator().manual_seed(s % (2**63))

    def build(self, index: int) -> dict[str, Any]:
        """Item ``index`` without substitution (raises `SampleError`)."""
        sid = self.sample_id(index)
        rec = validate_record(self.records[index], sid)
        rng, np_rng, gen = self.rngs(index)
        return build_train_item(rec, self.videos_root / rec["video"], self.llama_tokenizer, self.timestamp_tokenizer, sample_id=sid, settings=self.settings, rng=rng, np_rng=np_rng,
                                torch_gen=gen)

    def substitute_index(self, index: int, attempt: int) -> int:
        """Deterministic replacement for a failed index (a fixed stride walk, never ``index`` itself when len > 1)."""
        n = len(self)
        return (index + attempt * 7919) % n if n > 1 else index

    def __getitem__(self, index: int) -> dict[str, Any]:
        current = index
        # What happened while producing this item travels with it (`data_errors`), so the counts
        # reach the training loop even when items are built in DataLoader worker processes.
        local = IssueStats()
        for attempt in range(self.max_retries + 1):
            self.stats.attempts += 1
            local.attempts += 1
            try:
                item = self.build(current)
            except SampleError as err:
                self.stats.record(err.reason, err.sample_id, err.detail)
                local.record(err.reason, err.sample_id, err.detail)
                logger.warning("bad sample (%s) — %s; substituting", err.reason, err)
                check_failure_rate(self.stats, self.max_failure_rate, f"dataset {self.source}", self.min_attempts_for_rate)
                current = self.substitute_index(index, attempt + 1)
                continue
            item["requested_index"], item["index"] = index, current
            item["data_errors"] = local.to_dict()
            return item
        raise DataQualityError(f"dataset {self.source}: {self.max_retries + 1} consecutive samples failed from index {index}; {self.stats.summary()}; {AUDIT_HINT}")


