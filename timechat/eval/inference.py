"""Batched, rank-sharded, resumable inference (original `evaluate.py` + batched `Chat`, spec 5.1-5.3).

Flow of `InferenceEngine.run(samples)`:

1. The sample list (in its original order) is cut into *global* batches of `batch_size`
   consecutive samples; batch `b` belongs to rank `b % world_size`. A batch therefore holds the
   same samples whatever the number of processes, and since batch composition is the only
   thing that couples samples (left padding, the batch-wide timestamp tokenization), the merged
   results do not depend on the world size.
2. Resume: every `results_rank*.jsonl` and a previous `results.json` in the output folder are
   read; a sample with an answer there is done. A batch with at least one pending sample is run
   again *whole* (so its pending samples see the same batch as in an uninterrupted run) and only
   the pending samples are written.
3. A `DataLoader` (`num_workers` processes) decodes the videos, applies the eval transform and
   builds the timestamp sentences. A video that cannot be decoded becomes a line
   `{"id", "video", "error", "error_type", ...}`; the rest of its batch goes on.
4. Per batch: one `encode_video` call when every video has the same frame count (timestamps
   tokenized in one call over the whole batch, as the original `Chat`), else one call per
   video; the original Chat prompt per sample (`ChatState`: system, `<Video><ImageHere></Video> `
   + msg, double space, user prompt; an optional post-check round); left-padded generation
   (greedy by default; seeded sampling with seed + batch index); answer post-processing.
5. Each sample's line is appended to `results_rank{r}.jsonl` with flush + fsync, so a killed
   run loses nothing it has written. A partial last line (killed mid-write) is skipped.
6. After a barrier, rank 0 merges the rank files: one entry per sample id (the first answered
   entry wins, else the first error), in the original sample order, written atomically to
   `results.json` (without the per-run `timing`/`rank` fields, so the file is deterministic).

Differences from the original, all deliberate: greedy decoding by default (the original sampled),
ASR transcripts are looked up per video (the original used the position inside the batch) and
decode failures are recorded instead of crashing the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from timechat.constants import AUTOCAST_DTYPES
from timechat.config import EvalConfig
from timechat.data.collate import inference_timestamps
from timechat.data.conversation import ChatState, postprocess_answer, segment_ids
from timechat.data.settings import FrameBudget
from timechat.eval.tasks.common import resolve_system
from timechat.models.generation import GenerationConfig, check_context, generate
from timechat.io import atomic_write_json, read_json
from timechat import distributed as dist_utils
from timechat.logs import Progress

logger = logging.getLogger(__name__)

RANK_FILE = "results_rank{rank}.jsonl"
MERGED_FILE = "results.json"
SIGNATURE_FILE = "inference_signature.json"
KILL_ENV = "TIMECHAT_EVAL_KILL_AFTER"
"""Test hook: a rank hard-exits (``os._exit(17)``, no cleanup) after writing this many lines."""
# Per-run fields of a rank-file line that the merged file leaves out (it must be deterministic).
RUN_FIELDS = ("timing", "rank")


@dataclass
class EvalSample:
    """One generation request.

    Attributes:
        id: unique string id (the resume / merge key).
        video: video file path.
        prompt: the user prompt (already formatted, ASR prefix included).
        post_check: prompt of an optional second round in the same conversation.
        meta: task data carried into the result line (query, gt, duration, options, ...).
    """

    id: str
    video: str
    prompt: str
    post_check: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnswerRound:
    """What one `InferenceEngine.answer_round` call rendered and decoded, per conversation."""

    prompts: list[str]
    segment_ids: list[list[list[int]]]
    """Token ids of the prompt pieces around `<ImageHere>` (BOS on the first)."""
    generated_ids: list[list[int]]
    answers: list[str]


def check_unique_ids(samples: Sequence[EvalSample]) -> None:
    """Raise `ValueError` naming the first repeated sample id."""
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise ValueError(f"sample id {s.id!r} occurs twice; eval sample ids must be unique")
        seen.add(s.id)


def global_batches(n: int, batch_size: int) -> list[list[int]]:
    """Consecutive index batches `[[0..bs-1], [bs..2bs-1], ...]` over `n` samples."""
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


def rank_batches(n: int, batch_size: int, rank: int, world_size: int) -> list[tuple[int, list[int]]]:
    """The `(batch index, sample indices)` pairs of `rank`: global batch b goes to rank b % world_size."""
    return [(b, idx) for b, idx in enumerate(global_batches(n, batch_size)) if b % world_size == rank]


# --------------------------------------------------------------------------------------------
# Result files
# --------------------------------------------------------------------------------------------


def read_jsonl_lines(path: Path) -> list[dict[str, Any]]:
    """Parsed lines of a rank file; a partial or corrupt line (a killed writer) is skipped with a warning."""
    out = []
    if not path.is_file():
        return out
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s:%d: skipping an incomplete line (interrupted write)", path, n)
                continue
            if isinstance(item, dict) and "id" in item:
                out.append(item)
    return out


def is_answered(entry: dict[str, Any]) -> bool:
    """True for a complete answered entry (errors are retried on resume)."""
    return "answer" in entry and "error" not in entry


def previous_entries(output_dir: Path) -> list[dict[str, Any]]:
    """Every entry of earlier (or concurrent) runs: the merged file first, then all rank files."""
    entries: list[dict[str, Any]] = []
    merged = output_dir / MERGED_FILE
    if merged.is_file():
        try:
            data = json.loads(merged.read_text(encoding="utf-8"))
            entries += [e for e in data if isinstance(e, dict) and "id" in e]
        except json.JSONDecodeError:
            logger.warning("%s is not valid JSON; ignoring it for resume", merged)
    for path in sorted(output_dir.glob("results_rank*.jsonl")):
        entries += read_jsonl_lines(path)
    return entries


def merge_entries(samples: Sequence[EvalSample], entries: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One entry per sample in sample order: the first answered entry, else the first error.

    Returns:
        (merged entries without the per-run fields, ids of samples that have no entry at all).
    """
    best: dict[str, dict[str, Any]] = {}
    for e in entries:
        sid = str(e["id"])
        cur = best.get(sid)
        if cur is None or (not is_answered(cur) and is_answered(e)):
            best[sid] = e
    merged, missing = [], []
    for s in samples:
        e = best.get(s.id)
        if e is None:
            missing.append(s.id)
            continue
        merged.append({k: v for k, v in e.items() if k not in RUN_FIELDS})
    return merged, missing


class RankWriter:
    """Appends JSON lines to this rank's result file with flush + fsync per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # A run killed mid-write leaves a line without its newline: terminate it so the next line
        # starts clean (the partial line is skipped by readers).
        if path.is_file() and path.stat().st_size > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    with open(path, "ab") as g:
                        g.write(b"\n")
        self._f = open(path, "a", encoding="utf-8")
        self.written = 0
        kill = os.environ.get(KILL_ENV)
        self._kill_after = int(kill) if kill else None

    def write(self, entry: dict[str, Any]) -> None:
        self._f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.written += 1
        if self._kill_after is not None and self.written >= self._kill_after:
            logger.warning("%s=%d reached: exiting hard (simulated crash)", KILL_ENV, self._kill_after)
            os._exit(17)

    def close(self) -> None:
        self._f.close()


# --------------------------------------------------------------------------------------------
# Data loading (runs in DataLoader workers)
# --------------------------------------------------------------------------------------------


def decode_video(path: str | os.PathLike, num_frames: int | FrameBudget, image_size: int,
                 loader: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Decode one video as evaluation does: frames (uniform, or the sample's own `loader`, e.g. MVBench's
    segment sampler; see `timechat.data.video.load_eval_clip`), eval transform, timestamp sentences.
    `num_frames` is a count or a `FrameBudget` (`EvalConfig.frame_budget`).

    Returns:
        (the `timechat.data.video` clip, `{pixels (C, T, H, W), msg, sentences, num_frames}`).
    Raises:
        whatever `load_video` raises for a file it cannot decode (`VideoDecodeError` and others).
    """
    from timechat.data.transforms import eval_transform
    from timechat.data.video import load_eval_clip

    clip = load_eval_clip(path, loader, num_frames, image_size)
    return clip, {"pixels": eval_transform(clip.frames), "msg": clip.msg, "sentences": clip.sentences,
                  "num_frames": len(clip.indices)}


class VideoItems(torch.utils.data.Dataset):
    """Decoded, transformed videos of the samples, with their timestamp sentences.

    Never raises for a bad video: the item then carries `error` / `error_type` instead of pixels.
    """

    def __init__(self, samples: Sequence[EvalSample], num_frames: int | FrameBudget, image_size: int) -> None:
        self.samples = list(samples)
        self.num_frames = num_frames
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from timechat.data.video import VideoDecodeError

        sample = self.samples[index]
        t0 = time.perf_counter()
        item: dict[str, Any] = {"index": index}
        try:
            item.update(decode_video(sample.video, self.num_frames, self.image_size, sample.meta.get("loader"))[1])
        except VideoDecodeError as exc:
            item["error"], item["error_type"] = str(exc), exc.reason
        except Exception as exc:  # any other decode/transform failure is recorded, never fatal
            item["error"], item["error_type"] = f"cannot load video {sample.video}: {exc!r}", type(exc).__name__
        item["decode_s"] = time.perf_counter() - t0
        return item


def _as_list(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------


def run_signature(settings: dict[str, Any]) -> str:
    """Short hash of everything that changes the answers (model, checkpoint, prompts, decoding)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class InferenceEngine:
    """Runs the model over a sample list; see the module docstring.

    Args:
        model: a `TimeChat` in eval mode, on `device`.
        tokenizers: `timechat.factory.Tokenizers`.
        cfg: the eval settings.
        output_dir: where `results_rank{r}.jsonl` and `results.json` go (shared by all ranks).
        device: the model's device.
        rank / world_size: this process's place (default: from `timechat.distributed`).
        signature: settings that identify the run (see `run_signature`); a resumed run must match.
        ignore_eos: decode exactly `cfg.max_new_tokens` per round, past any EOS (for throughput
            measurements, e.g. `scripts/benchmark.py`; the answers are then not the model's).
    """

    def __init__(
        self,
        model: Any,
        tokenizers: Any,
        cfg: EvalConfig,
        output_dir: str | os.PathLike,
        device: torch.device | str = "cpu",
        *,
        rank: int | None = None,
        world_size: int | None = None,
        signature: dict[str, Any] | None = None,
        ignore_eos: bool = False,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.device = torch.device(device)
        self.rank = dist_utils.get_rank() if rank is None else rank
        self.world_size = dist_utils.get_world_size() if world_size is None else world_size
        self.llama_tok = tokenizers.llama
        if cfg.timestamp_tokenizer == "llama":
            self.ts_tok = tokenizers.llama
        elif cfg.timestamp_tokenizer == "bert":
            if tokenizers.bert is None:
                raise ValueError("eval.timestamp_tokenizer=bert but no BERT tokenizer is configured (model.bert_tokenizer)")
            self.ts_tok = tokenizers.bert
        else:
            self.ts_tok = tokenizers.timestamp(model.cfg, training=False)
        self.system = resolve_system(cfg.system)
        self.signature = signature
        self.ignore_eos = ignore_eos
        self.stats: dict[str, Any] = {}

    # -- helpers -----------------------------------------------------------------------------
    def autocast(self):
        if self.cfg.precision in AUTOCAST_DTYPES:
            return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES[self.cfg.precision])
        return contextlib.nullcontext()

    def generation_config(self, batch_index: int, round_index: int) -> GenerationConfig:
        c = self.cfg
        return GenerationConfig(
            max_new_tokens=c.max_new_tokens, do_sample=c.do_sample, temperature=c.temperature,
            top_p=c.top_p if c.do_sample else 1.0, seed=c.seed + 1000 * batch_index + round_index,
            max_context=c.max_context, **({"eos_token_id": -1} if self.ignore_eos else {}),
        )

    def _check_signature(self) -> None:
        """Refuse to resume results of a run with other settings (rank 0 writes the signature)."""
        if self.signature is None:
            return
        path = self.output_dir / SIGNATURE_FILE
        sig = run_signature(self.signature)
        if path.is_file():
            old = read_json(path)
            if old.get("signature") != sig and self.cfg.resume:
                changed = sorted(k for k in set(old.get("settings", {})) | set(self.signature)
                                 if json.dumps(old.get("settings", {}).get(k), sort_keys=True, default=str)
                                 != json.dumps(self.signature.get(k), sort_keys=True, default=str))
                raise ValueError(
                    f"{self.output_dir} holds results of a run with other settings (changed: {changed}); "
                    "use another output_dir or eval.resume=false to start afresh"
                )
        if self.rank == 0:
            atomic_write_json(path, {"signature": sig, "settings": json.loads(json.dumps(self.signature, default=str))},
                              ensure_ascii=False)

    def _start_fresh(self) -> None:
        for p in list(self.output_dir.glob("results_rank*.jsonl")) + [self.output_dir / MERGED_FILE]:
            if p.is_file():
                p.unlink()

    # -- main entry ---------------------------------------------------------------------------
    def run(self, samples: Sequence[EvalSample]) -> list[dict[str, Any]] | None:
        """Answer every sample (this rank's share), then merge on rank 0.

        Args:
            samples: all samples in their original order (every rank passes the same list).
        Returns:
            On rank 0 the merged entries (also written to `results.json`); None on other ranks.
        """
        check_unique_ids(samples)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        problem = None
        if self.rank == 0:
            if not self.cfg.resume:
                self._start_fresh()
            try:
                self._check_signature()
            except ValueError as exc:
                problem = str(exc)
        # Every rank must stop, not only rank 0 (the others would wait at the next barrier).
        problem = dist_utils.broadcast_object(problem)
        if problem:
            raise ValueError(problem)
        done = {str(e["id"]) for e in previous_entries(self.output_dir) if is_answered(e)}
        mine = rank_batches(len(samples), self.cfg.batch_size, self.rank, self.world_size)
        pending = [(b, idx) for b, idx in mine if any(samples[i].id not in done for i in idx)]
        n_mine = sum(len(idx) for _, idx in mine)
        n_todo = sum(1 for _, idx in pending for i in idx if samples[i].id not in done)
        logger.info("rank %d/%d: %d samples assigned, %d already answered, %d to run in %d batches",
                    self.rank, self.world_size, n_mine, n_mine - n_todo, n_todo, len(pending))
        t0 = time.perf_counter()
        if pending:
            self._run_batches(samples, pending, done, n_mine, n_mine - n_todo)
        self.stats.update(rank=self.rank, assigned=n_mine, resumed=n_mine - n_todo, ran=n_todo,
                          wall_s=time.perf_counter() - t0)
        dist_utils.barrier()
        if self.rank != 0:
            return None
        merged, missing = merge_entries(samples, previous_entries(self.output_dir))
        if missing:
            raise RuntimeError(f"after all ranks finished, {len(missing)} sample(s) have no result line "
                               f"(e.g. {missing[0]!r}) in {self.output_dir}")
        atomic_write_json(self.output_dir / MERGED_FILE, merged, ensure_ascii=False)
        logger.info("merged %d results into %s", len(merged), self.output_dir / MERGED_FILE)
        return merged

    def _run_batches(self, samples: Sequence[EvalSample], pending: list[tuple[int, list[int]]],
                     done: set[str], total: int, start: int) -> None:
        dataset = VideoItems(samples, self.cfg.frame_budget, self.model.cfg.vision.image_size)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=[idx for _, idx in pending], num_workers=self.cfg.num_workers,
            collate_fn=_as_list, pin_memory=False,
        )
        writer = RankWriter(self.output_dir / RANK_FILE.format(rank=self.rank))
        progress = Progress(total, start=start, rank=self.rank, samples_per_step=1, interval_s=self.cfg.log_every_s,
                            logger=logging.getLogger("timechat.eval"))
        finished = start
        try:
            for (b, _), items in zip(pending, loader):
                entries = self.answer_batch(samples, items, batch_index=b)
                for e in entries:
                    if e["id"] in done:
                        continue  # answered by an earlier run; the batch only ran for its neighbours
                    e["rank"] = self.rank
                    writer.write(e)
                    finished += 1
                progress.update(finished, failures=sum(1 for e in entries if "error" in e))
        finally:
            writer.close()

    @torch.no_grad()
    def answer_batch(self, samples: Sequence[EvalSample], items: list[dict[str, Any]], batch_index: int = 0
                     ) -> list[dict[str, Any]]:
        """Answer one batch of decoded items (output of `VideoItems`), in item order.

        Returns:
            One result entry per item: `{id, video, prompt, [post_check_prompt], answer, answers,
            meta, timing}` or `{id, video, prompt, error, error_type, meta, timing}`.
        """
        t0 = time.perf_counter()
        entries: dict[int, dict[str, Any]] = {}
        ok = []
        for it in items:
            s = samples[it["index"]]
            e: dict[str, Any] = {"id": s.id, "video": s.video, "prompt": s.prompt}
            if s.post_check:
                e["post_check_prompt"] = s.post_check
            if "error" in it:
                e["error"], e["error_type"] = it["error"], it["error_type"]
                logger.warning("sample %s: %s", s.id, it["error"])
            else:
                ok.append(it)
            e["meta"] = s.meta
            e["timing"] = {"decode_s": round(it["decode_s"], 4)}
            entries[it["index"]] = e
        if ok:
            answers = self._generate(samples, ok, batch_index)
            dt = time.perf_counter() - t0
            for it, rounds in zip(ok, answers):
                e = entries[it["index"]]
                e["answer"] = rounds[-1]
                e["answers"] = rounds
                e["num_frames"] = it["num_frames"]
                e["timing"].update(batch_s=round(dt, 4), batch_size=len(ok))
        return [entries[it["index"]] for it in items]

    def encode_videos(self, ok: list[dict[str, Any]]) -> list[torch.Tensor]:
        """Video tokens per item: one batched call if every video has the same frame count."""
        calls = inference_timestamps([it["sentences"] for it in ok], self.ts_tok)
        dev = self.device
        if calls.path == "batched":  # one tokenizer call over every frame: the stacked layout
            images = torch.stack([it["pixels"] for it in ok]).to(dev)  # (B, C, T, H, W)
            ts = {k: v.to(dev) for k, v in calls.calls[0].items()}  # (B*T, L)
        else:
            images = [it["pixels"].to(dev) for it in ok]  # per item (C, T, H, W)
            ts = [{k: v.to(dev) for k, v in t.items()} for t in calls.per_video()]  # per item (T, L)
        return self.model.encode_batch_videos({"images": images, "timestamps": ts})

    def answer_round(self, states: Sequence[ChatState], video: Sequence[torch.Tensor], gen_cfg: GenerationConfig,
                     on_token: Callable[[torch.Tensor], None] | None = None,
                     names: Sequence[str] | None = None) -> AnswerRound:
        """One `Chat.answer` call: render each state's prompt, decode left-padded, post-process.

        Each state gets its answer stored (`ChatState.set_answer`) for the next round.

        Args:
            states: conversations whose last message is the pending user turn.
            video: per state, its video tokens (`encode_videos`).
            gen_cfg: decoding settings.
            on_token: called with the (B,) ids of every decoding step (streaming).
            names: per state, a name for errors (the sample ids).
        Raises:
            ContextOverflowError: a prompt would lose video tokens to the `max_context` cut
                (`timechat.models.generation.check_context`), before anything is decoded.
        """
        prompts = [st.prompt_for_answer() for st in states]
        segs = [segment_ids(p, self.llama_tok) for p in prompts]
        # Stand-in models of the tests have no LLM config: then only max_context is checked.
        positions = getattr(getattr(self.model.base_llm, "config", None), "max_position_embeddings", None)
        check_context([(len(s[0]), v.shape[0], sum(len(x) for x in s[1:])) for s, v in zip(segs, video)], gen_cfg,
                      positions, names)
        embeds, mask = self.model.build_context_embeds(segs, list(video))
        out = generate(self.model.llama_model, embeds, mask, gen_cfg, on_token=on_token)
        answers = []
        for row, st in zip(out.sequences.tolist(), states):
            text = postprocess_answer(row, self.llama_tok)
            st.set_answer(text)
            answers.append(text)
        return AnswerRound(prompts, segs, out.sequences.tolist(), answers)

    def _generate(self, samples: Sequence[EvalSample], ok: list[dict[str, Any]], batch_index: int) -> list[list[str]]:
        with self.autocast():
            video = self.encode_videos(ok)
            states = []
            for it in ok:
                st = ChatState(system=self.system)
                st.upload_video(it["msg"])
                st.ask(samples[it["index"]].prompt)
                states.append(st)
            rounds: list[list[str]] = [[] for _ in ok]
            active = list(range(len(ok)))
            round_index = 0
            while active:
                done = self.answer_round([states[i] for i in active], [video[i] for i in active],
                                         self.generation_config(batch_index, round_index),
                                         names=[f"sample {samples[ok[i]['index']].id!r}" for i in active])
                for text, i in zip(done.answers, active):
                    rounds[i].append(text)
                # Post-check: a second round in the same conversation for samples that have one.
                nxt = []
                if round_index == 0:
                    for i in active:
                        pc = samples[ok[i]["index"]].post_check
                        if pc:
                            states[i].ask(pc)
                            nxt.append(i)
                active = nxt
                round_index += 1
        return rounds

