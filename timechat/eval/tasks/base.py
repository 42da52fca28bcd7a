"""What every evaluation task shares: `EvalTask`, `TaskOutput`, the multiple-choice scoring loop.

Each task (one module beside this one, named in `timechat.registry.TASKS`)

* `build_samples()`: reads its annotation file and returns `EvalSample`s (unique string ids, the
  video path, the formatted user prompt, metadata);
* `evaluate(entries, out_dir)`: parses the merged answers (every unparseable answer counted in a
  `timechat.stats.IssueStats` per (sub-)task), writes the prediction file in the ORIGINAL format
  (`fmt_*.json`, plus the original raw `*_result.json` list), scores it with `timechat.metrics`
  in-process and returns a `TaskOutput`.

Scoring rule for an answer that cannot be parsed, and for a sample whose video could not be
decoded (both are counted and shown in the report; neither is dropped silently):

* TVG: an empty prediction `{"timestamp": []}` - a miss that stays in the denominator;
* DVC: no events for that video (scores 0 on every metric for it);
* VHD: all-zero `pred_saliency_scores` over the video's clips, so the qid is still scored;
* MVBench: an answer without ``(`` is judged as option A, as the original's ``check_ans`` (counted);
  a sample whose video fails is skipped and not counted, as the original;
* EgoSchema / Video-MME: the original's random letter, drawn in sample order from
  ``random.Random(eval.seed)`` (`common.SeededFallback`; counted, recorded in ``fallbacks.json``);
  ``eval.extra.fallback: none`` scores them wrong instead;
* TempCompass: the original writes predictions only; our rule-based accuracy counts unparseable as
  wrong, captioning has no ground truth.

The input format each task reads (paths from the `eval` config section) is described in its module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from timechat import io
from timechat.config import EvalConfig
from timechat.data.asr import asr_file_for_video, load_asr_text, with_asr_prefix
from timechat.eval.inference import EvalSample
from timechat.eval.tasks.common import ParseResult
from timechat.io import atomic_write_json
from timechat.stats import IssueStats

#: Answers are cut to this many characters in the report's parse-failure examples.
EXAMPLE_CHARS = 300


@dataclass
class TaskOutput:
    """What a task's evaluation produced.

    Attributes:
        metrics: metric name -> value (percent where the original reports percent).
        parse_stats: (sub-)task name -> parse counts / reasons / examples.
        counts: samples, answered, decode failures, parse failures, fallbacks.
        files: name -> path of the files written.
        decode_failures: `{id, video, error}` of the samples whose video failed (first few).
        timelines: per video/query `{label, duration, gt: [[s, e]], pred: [[s, e]]}` (TVG, DVC).
        saliency: per query `{label, gt: [...], pred: [...]}` per 2-s clip (VHD).
        notes: remarks for the report (e.g. a metric that could not run).
        rows: one row per sample for the report's per-sample table (`id, video, query, gt, pred, score,
            status, ...`; TVG, DVC, VHD).
        baselines: name -> metrics of a trivial prediction computed from the ground truth itself.
    """

    metrics: dict[str, Any]
    parse_stats: dict[str, IssueStats]
    counts: dict[str, int]
    files: dict[str, str] = field(default_factory=dict)
    decode_failures: list[dict[str, Any]] = field(default_factory=list)
    timelines: list[dict[str, Any]] = field(default_factory=list)
    saliency: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def write_json(path: Path, obj: Any) -> str:
    """Write a prediction file (indent 1, UTF-8 text, final newline) atomically; returns its path."""
    atomic_write_json(path, obj, ensure_ascii=False)
    return str(path)


def read_json(path: str | Path, what: str) -> Any:
    """A JSON file; a missing one names ``what`` and the path, an unreadable one the path and position."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return io.read_json(path)  # a DataFileError (ValueError) naming the file and position


def count_parse(stats: IssueStats, result: ParseResult, text: str | None, sample_id: Any) -> ParseResult:
    """Count one parsed answer in ``stats`` (its reason when unparseable); returns ``result``."""
    stats.add(None if result.ok else (result.reason or "unknown"), sample_id, text)
    return result


def invalid_notes(invalid: Sequence[Any], limit: int) -> list[str]:
    """Report notes for the predictions the metrics scored as misses (`timechat.metrics.InvalidPrediction`)."""
    notes = [f"invalid prediction {p.id}: {p.reason} (scored as a miss)" for p in invalid[:limit]]
    if len(invalid) > limit:
        notes.append(f"... and {len(invalid) - limit} more invalid predictions")
    return notes


def sample_counts(entries: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Samples, answered ones and decode failures among the merged entries."""
    errors = sum(1 for e in entries if "error" in e)
    return {"samples": len(entries), "answered": len(entries) - errors, "decode_failures": errors}


def decode_failures(entries: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` entries whose video could not be decoded."""
    return [{"id": e["id"], "video": e.get("video"), "error": e["error"], "error_type": e.get("error_type")}
            for e in entries if "error" in e][:limit]


def spread(items: Sequence[Any], k: int) -> list[Any]:
    """`k` items spread evenly over the list (deterministic plot sample)."""
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / max(k - 1, 1))] for i in range(k)]


def accuracy(rows: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    """Accuracy (percent) per value of `key`, plus `Avg` (mean of those) and `Overall` (pooled)."""
    groups: dict[str, list[bool]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(bool(r["correct"]))
    out = {g: 100.0 * sum(v) / len(v) for g, v in groups.items()}
    if out:
        out["Avg"] = sum(out.values()) / len(out)
        out["Overall"] = 100.0 * sum(r["correct"] for r in rows) / len(rows)
    return out


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


class EvalTask:
    """Shared plumbing; subclasses set `name` and implement `build_samples` / `evaluate`."""

    name = "task"
    #: The ``eval.extra`` keys this task reads; when set, any other key is an error (a typo would
    #: otherwise be ignored silently). None: not checked.
    extra_keys: frozenset[str] | None = None

    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        if self.extra_keys is not None:
            unknown = sorted(set(cfg.extra) - self.extra_keys)
            if unknown:
                raise ValueError(f"unknown eval.extra key(s) {unknown} for task {self.name!r}; "
                                 f"known: {sorted(self.extra_keys)}")

    # -- paths ---------------------------------------------------------------------------------
    def _require(self, key: str) -> str:
        value = getattr(self.cfg, key)
        if not value:
            raise ValueError(f"eval.{key} must be set for task {self.name!r}")
        if key in ("anno_path", "gt_file", "videos_dir", "asr_dir") and not Path(value).exists():
            raise FileNotFoundError(f"eval.{key} of task {self.name!r} does not exist: {value}")
        return value

    def video_path(self, name: str) -> str:
        return str(Path(self._require("videos_dir")) / Path(name).name)

    @property
    def gt_path(self) -> str:
        return self.cfg.gt_file or self._require("anno_path")

    # -- prompts -------------------------------------------------------------------------------
    def template(self) -> str:
        """The user prompt template: `eval.prompt_template` text, else `eval.prompt` (name or file)."""
        return self.cfg.prompt_template or self._resolve_prompt(self.cfg.prompt)

    def post_check(self) -> str | None:
        pc = self.cfg.post_check_prompt
        return self._resolve_prompt(pc) if pc else None

    @staticmethod
    def _resolve_prompt(name_or_path: str) -> str:
        # Imported here: the table gathers the task modules' prompts, and those modules import this one.
        from timechat.eval.tasks.prompts import resolve_prompt

        return resolve_prompt(name_or_path)

    def with_asr(self, prompt: str, video: str) -> str:
        if not self.cfg.asr:
            return prompt
        text = load_asr_text(asr_file_for_video(self._require("asr_dir"), video))
        return with_asr_prefix(prompt, text)

    # -- samples and results -------------------------------------------------------------------
    def limit(self, samples: list[EvalSample]) -> list[EvalSample]:
        return samples[: self.cfg.max_samples] if self.cfg.max_samples is not None else samples

    def file_stem(self) -> str:
        c = self.cfg
        frames = f"f{c.num_frames}" if c.fps is None else f"fps{c.fps:g}_max{c.max_frames}"
        return f"{c.dataset}_{c.split}_{frames}_result.json"

    def parse_stats(self) -> IssueStats:
        """An empty counter of parse failures, keeping the first `eval.max_examples` examples."""
        return IssueStats(max_examples=self.cfg.max_examples, per_reason=False, max_chars=EXAMPLE_CHARS)

    def build_samples(self) -> list[EvalSample]:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:  # pragma: no cover
        raise NotImplementedError

    def _raw_results(self, entries: Sequence[dict[str, Any]], out_dir: Path) -> str:
        """The original's raw list `{vname, generated_cap, prompt[, query, id]}`."""
        rows = []
        for e in entries:
            row = {"vname": Path(e["video"]).name, "generated_cap": e.get("answer"), "prompt": e["prompt"]}
            if "query" in e["meta"]:
                row.update(query=e["meta"]["query"], id=e["meta"].get("qid", e["id"]))
            if "error" in e:
                row["error"] = e["error"]
            rows.append(row)
        return write_json(out_dir / self.file_stem(), rows)
