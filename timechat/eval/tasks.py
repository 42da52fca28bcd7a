"""Evaluation tasks: samples from annotation files, answer parsing, prediction files, scores.

One class per name of `timechat.registry.TASKS`. Each task

* `build_samples()`: reads its annotation file and returns `EvalSample`s (unique string ids, the
  video path, the formatted user prompt, metadata);
* `evaluate(entries, out_dir)`: parses the merged answers (`timechat.eval.parsers`, every
  unparseable answer counted in a `ParseStats`), writes the prediction file in the ORIGINAL
  format (`fmt_*.json`, plus the original raw `*_result.json` list), scores it with
  `timechat.metrics` in-process and returns a `TaskOutput`.

Scoring rule for an answer that cannot be parsed, and for a sample whose video could not be
decoded (both are counted and shown in the report; neither is dropped silently):

* TVG: an empty prediction `{"timestamp": []}` - a miss that stays in the denominator;
* DVC: no events for that video (scores 0 on every metric for it);
* VHD: all-zero `pred_saliency_scores` over the video's clips, so the qid is still scored;
* MVBench / EgoSchema / Video-MME: the seeded fallback letter of `parsers.qa_fallback`
  (MVBench `A` as the original; EgoSchema / Video-MME a letter drawn from the seed and the sample
  id, independent of sharding), counted as a fallback;
* TempCompass: unparseable = wrong (rule-based accuracy; the official scorer is LLM-assisted),
  captioning has no ground truth and is written as predictions only.

Input formats (paths from the `eval` config section):

* `dvc`: `anno_path` = YouCook2 / ActivityNet `{split}.caption_coco_format.json`
  (`annotations: [{image_id, segments, pure_cap | caption, duration}]`), one sample per video,
  id = the video file name; videos at `videos_dir / basename(image_id)`.
* `tvg`: `anno_path` = Charades-STA `{split}.caption_coco_format.json`
  (`annotations: [{image_id, caption, timestamp, id}]`), one sample per query, id = `str(id)`,
  prompt `template.format(dataset, caption.strip('.'))`.
* `vhd`: `anno_path` = QVHighlights `highlight_{split}_release.jsonl` (`qid, query, vid,
  duration`; videos `videos_dir/{vid}.mp4`) or a COCO-style `*.json` (`image_id, caption, id,
  duration`); `gt_file` = the jsonl the metric reads.
* `mvbench`: `anno_path` = MVBench's `json/` folder; `extra.tasks` = `{task name: {json: file,
  prefix: video folder under videos_dir}}` (default: every `*.json`, prefix = its stem). Each file
  is a list of `{video, question, candidates, answer}`.
* `tempcompass`: `anno_path` = folder of `{task_type}.json` (`{video_id: {dimension: [{question,
  answer}]}}`), `extra.task_types` (default all four); videos `videos_dir/{video_id}.mp4`.
* `egoschema`: `anno_path` = `questions.json` (`[{q_uid, question, option 0..option 4}]`),
  `extra.answers` = `subset_answers.json` (`{q_uid: index}`), `extra.subset_only` (default true:
  the 500-question subset, as the original's `--eval_on_subset_answers`); videos
  `videos_dir/{q_uid}.mp4`. Also writes `output.csv` (`q_uid,answer`) for the full-set submission.
* `videomme`: `anno_path` = a json list, either Video-MME's per-video records (`videoID,
  duration, questions: [{question_id, question, options, answer}]`) or one record per question
  (`videoID, duration, question_id, question, options, answer`); videos `videos_dir/{videoID}.mp4`.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from timechat.config import EvalConfig
from timechat.data.datasets import read_coco_annotations, read_qvhighlights_jsonl
from timechat.eval import parsers as P
from timechat.eval import prompts as prompts_mod
from timechat.eval.inference import EvalSample

logger = logging.getLogger(__name__)


@dataclass
class TaskOutput:
    """What a task's evaluation produced.

    Attributes:
        metrics: metric name -> value (percent where the original reports percent).
        parse_stats: parse counts / reasons / examples per (sub-)task.
        counts: samples, answered, decode failures, parse failures, fallbacks.
        files: name -> path of the files written.
        decode_failures: `{id, video, error}` of the samples whose video failed (first few).
        timelines: per video/query `{label, duration, gt: [[s, e]], pred: [[s, e]]}` (TVG, DVC).
        saliency: per query `{label, gt: [...], pred: [...]}` per 2-s clip (VHD).
        notes: remarks for the report (e.g. a metric that could not run).
    """

    metrics: dict[str, Any]
    parse_stats: P.ParseStats
    counts: dict[str, int]
    files: dict[str, str] = field(default_factory=dict)
    decode_failures: list[dict[str, Any]] = field(default_factory=list)
    timelines: list[dict[str, Any]] = field(default_factory=list)
    saliency: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, obj: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return str(path)


def _read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def fill_query_prompt(template: str, dataset: str, query: str) -> str:
    """A TVG/VHD prompt: named `{query}` / `{dataset}` fields, or the original's positional ones.

    Positional templates go through `prompts.format_task_prompt` (`format(dataset, query.strip('.'))`,
    refusing the one-`{}` bug); named ones get `format(dataset=dataset, query=query.strip('.'))`.
    """
    names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    if names and not all(n.isdigit() for n in names):
        unknown = sorted(n for n in names if n not in ("query", "dataset"))
        if unknown or "query" not in names:
            raise ValueError(f"prompt template fields {sorted(names)}: expected {{query}} (and optionally "
                             f"{{dataset}}): {template[:80]!r}...")
        return template.format(dataset=dataset, query=query.strip("."))
    return prompts_mod.format_task_prompt(template, dataset, query)


def _counts(entries: Sequence[dict[str, Any]]) -> dict[str, int]:
    errors = sum(1 for e in entries if "error" in e)
    return {"samples": len(entries), "answered": len(entries) - errors, "decode_failures": errors}


def _decode_failures(entries: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return [{"id": e["id"], "video": e.get("video"), "error": e["error"], "error_type": e.get("error_type")}
            for e in entries if "error" in e][:limit]


def _spread(items: Sequence[Any], k: int) -> list[Any]:
    """`k` items spread evenly over the list (deterministic plot sample)."""
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / max(k - 1, 1))] for i in range(k)]


class EvalTask:
    """Shared plumbing; subclasses set `name` and implement `build_samples` / `evaluate`."""

    name = "task"

    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg

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

    def template(self) -> str:
        """The user prompt template: `eval.prompt_template` text, else `eval.prompt` (name or file)."""
        return self.cfg.prompt_template or prompts_mod.resolve_prompt(self.cfg.prompt)

    def post_check(self) -> str | None:
        pc = self.cfg.post_check_prompt
        return prompts_mod.resolve_prompt(pc) if pc else None

    def with_asr(self, prompt: str, video: str) -> str:
        if not self.cfg.asr:
            return prompt
        text = prompts_mod.load_asr_text(prompts_mod.asr_file_for_video(self._require("asr_dir"), video))
        return prompts_mod.with_asr_prefix(prompt, text)

    def limit(self, samples: list[EvalSample]) -> list[EvalSample]:
        return samples[: self.cfg.max_samples] if self.cfg.max_samples is not None else samples

    def file_stem(self) -> str:
        return f"{self.cfg.dataset}_{self.cfg.split}_f{self.cfg.num_frames}_result.json"

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
        return _write_json(out_dir / self.file_stem(), rows)


# --------------------------------------------------------------------------------------------
# Dense video captioning
# --------------------------------------------------------------------------------------------


class DenseCaptioningTask(EvalTask):
    """YouCook2 / ActivityNet dense captioning (`eval_dvc.py`: CIDEr, METEOR, SODA_c, P/R/F1)."""

    name = "dvc"

    def build_samples(self) -> list[EvalSample]:
        anno = self._require("anno_path")
        template = self.template()
        samples, seen = [], set()
        for k, a in enumerate(read_coco_annotations(anno)):
            if "image_id" not in a:
                raise ValueError(f"{anno}: annotation {k} has no 'image_id'")
            key = str(a["image_id"]).split("/")[-1]
            if key in seen:
                raise ValueError(f"{anno}: video {key!r} appears twice (DVC predictions are keyed by video)")
            seen.add(key)
            video = self.video_path(key)
            samples.append(EvalSample(key, video, self.with_asr(template, video), self.post_check(),
                                      {"duration": a.get("duration"), "segments": a.get("segments")}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        from timechat.metrics import JavaUnavailableError, dvc_metrics, split_from_gt_path
        from timechat.metrics._common import MetricInputError

        out_dir = Path(out_dir)
        stats = P.ParseStats(max_examples=self.cfg.max_examples)
        preds: dict[str, list[dict[str, Any]]] = {}
        timelines = []
        for e in entries:
            events: list[dict[str, Any]] = []
            if "error" not in e:
                res = stats.add(self.name, P.format_dvc_output(e["answer"]), e["answer"], e["id"])
                events = res.value if res.ok else []
            preds[e["id"]] = events
            timelines.append({"label": e["id"], "duration": e["meta"].get("duration"),
                              "gt": e["meta"].get("segments") or [], "pred": [ev["timestamp"] for ev in events]})
        files = {"raw": self._raw_results(entries, out_dir),
                 "predictions": _write_json(out_dir / f"fmt_{self.file_stem()}", preds)}
        gt = _read_json(self.gt_path, "DVC gt file")
        if self.cfg.max_samples is not None:
            keep = set(preds)
            gt = {**gt, "annotations": [a for a in gt["annotations"] if str(a["image_id"]).split("/")[-1] in keep]}
        try:
            split = split_from_gt_path(self.gt_path)
        except MetricInputError:
            split = self.cfg.split
        notes, metrics = [], {}
        try:
            metrics = dvc_metrics(preds, gt, split=split)
        except JavaUnavailableError as exc:
            notes.append(f"DVC metrics not computed: {exc}")
            logger.warning("DVC metrics not computed: %s", exc)
        return TaskOutput(metrics, stats, self._counts(entries, stats), files,
                          _decode_failures(entries, self.cfg.max_examples),
                          timelines=_spread(timelines, self.cfg.plot_samples), notes=notes)

    def _counts(self, entries, stats: P.ParseStats) -> dict[str, int]:
        return {**_counts(entries), "parse_failures": stats.unparseable(self.name)}


# --------------------------------------------------------------------------------------------
# Temporal video grounding
# --------------------------------------------------------------------------------------------


class GroundingTask(EvalTask):
    """Charades-STA temporal grounding (`eval_tvg.py`: R1@0.3/0.5/0.7, plus mIoU)."""

    name = "tvg"

    def build_samples(self) -> list[EvalSample]:
        anno = self._require("anno_path")
        template = self.template()
        samples = []
        for k, a in enumerate(read_coco_annotations(anno)):
            for key in ("image_id", "caption", "id"):
                if key not in a:
                    raise ValueError(f"{anno}: annotation {k} has no {key!r}")
            video = self.video_path(str(a["image_id"]))
            prompt = self.with_asr(fill_query_prompt(template, self.cfg.dataset, a["caption"]), video)
            samples.append(EvalSample(str(a["id"]), video, prompt, self.post_check(),
                                      {"query": a["caption"], "qid": a["id"], "vid": Path(video).stem,
                                       "gt": a.get("timestamp"), "duration": a.get("duration")}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        from timechat.metrics import tvg_metrics

        out_dir = Path(out_dir)
        stats = P.ParseStats(max_examples=self.cfg.max_examples)
        preds, timelines = {}, []
        for e in entries:
            window: list[list[float]] = []
            if "error" not in e:
                res = stats.add(self.name, P.extract_time(e["answer"]), e["answer"], e["id"])
                window = [res.value] if res.ok else []
            m = e["meta"]
            preds[e["id"]] = {"timestamp": window, "query": m.get("query"), "vid": m.get("vid")}
            timelines.append({"label": f"{e['id']}: {m.get('query', '')}"[:60], "duration": m.get("duration"),
                              "gt": [m["gt"]] if m.get("gt") else [], "pred": window})
        files = {"raw": self._raw_results(entries, out_dir),
                 "predictions": _write_json(out_dir / f"fmt_{self.file_stem()}", preds)}
        gt = _read_json(self.gt_path, "TVG gt file")
        metrics = tvg_metrics(preds, gt, sample=self.cfg.max_samples is not None)
        return TaskOutput(metrics, stats, {**_counts(entries), "parse_failures": stats.unparseable(self.name)},
                          files, _decode_failures(entries, self.cfg.max_examples),
                          timelines=_spread(timelines, self.cfg.plot_samples))


# --------------------------------------------------------------------------------------------
# Video highlight detection
# --------------------------------------------------------------------------------------------


class HighlightTask(EvalTask):
    """QVHighlights highlight detection (`eval_vhd.py`: HL-min-VeryGood mAP / HIT@1, ...)."""

    name = "vhd"

    def _rows(self) -> list[dict[str, Any]]:
        anno = self._require("anno_path")
        if str(anno).endswith(".jsonl"):
            return [{"qid": r["qid"], "query": r["query"], "video": f"{r['vid']}.mp4", "vid": r["vid"],
                     "duration": r.get("duration")} for r in read_qvhighlights_jsonl(anno)]
        rows = []
        for k, a in enumerate(read_coco_annotations(anno)):
            for key in ("image_id", "caption", "id"):
                if key not in a:
                    raise ValueError(f"{anno}: annotation {k} has no {key!r}")
            name = str(a["image_id"]).split("/")[-1]
            rows.append({"qid": a["id"], "query": a["caption"], "video": name, "vid": Path(name).stem,
                         "duration": a.get("duration")})
        return rows

    def build_samples(self) -> list[EvalSample]:
        template = self.template()
        gt_by_qid = {r["qid"]: r for r in read_qvhighlights_jsonl(self.gt_path)} if self.cfg.gt_file else {}
        samples = []
        for r in self._rows():
            duration = r["duration"] if r["duration"] is not None else gt_by_qid.get(r["qid"], {}).get("duration")
            if duration is None:
                raise ValueError(f"VHD query {r['qid']}: no duration in {self.cfg.anno_path} nor in eval.gt_file")
            video = self.video_path(r["video"])
            prompt = self.with_asr(fill_query_prompt(template, self.cfg.dataset, r["query"]), video)
            samples.append(EvalSample(str(r["qid"]), video, prompt, self.post_check(),
                                      {"query": r["query"], "qid": r["qid"], "vid": r["vid"],
                                       "duration": float(duration)}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        from timechat.metrics import vhd_metrics

        out_dir = Path(out_dir)
        stats = P.ParseStats(max_examples=self.cfg.max_examples)
        gt_rows = read_qvhighlights_jsonl(self.gt_path)
        gt_by_qid = {r["qid"]: r for r in gt_rows}
        preds, saliency = [], []
        for e in entries:
            m = e["meta"]
            duration = float(m["duration"])
            zeros = [0.0] * int(duration / P.VHD_CLIP_SECONDS)
            scores = zeros
            if "error" not in e:
                res = stats.add(self.name, P.format_vhd_output(e["answer"], duration), e["answer"], e["id"])
                scores = res.value if res.ok else zeros
            preds.append({"qid": m["qid"], "query": m["query"], "vid": m["vid"], "pred_saliency_scores": scores})
            g = gt_by_qid.get(m["qid"])
            if g is not None:
                per_clip = [0.0] * len(zeros)
                for cid, s in zip(g.get("relevant_clip_ids", []), g.get("saliency_scores", [])):
                    if 0 <= cid < len(per_clip):
                        per_clip[cid] = sum(s) / len(s) if isinstance(s, list) and s else float(s or 0)
                saliency.append({"label": f"{m['qid']}: {m['query']}"[:60], "gt": per_clip, "pred": scores})
        files = {"raw": self._raw_results(entries, out_dir),
                 "predictions": _write_json(out_dir / f"fmt_{self.file_stem()}", preds)}
        metrics = vhd_metrics(preds, gt_rows)
        return TaskOutput(metrics, stats, {**_counts(entries), "parse_failures": stats.unparseable(self.name)},
                          files, _decode_failures(entries, self.cfg.max_examples),
                          saliency=_spread(saliency, self.cfg.plot_samples))


# --------------------------------------------------------------------------------------------
# QA benchmarks
# --------------------------------------------------------------------------------------------


def _accuracy(rows: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    """Accuracy (percent) per value of `key`, plus `Avg` (mean of those) and `Overall` (pooled)."""
    groups: dict[str, list[bool]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(bool(r["correct"]))
    out = {g: 100.0 * sum(v) / len(v) for g, v in groups.items()}
    if out:
        out["Avg"] = sum(out.values()) / len(out)
        out["Overall"] = 100.0 * sum(r["correct"] for r in rows) / len(rows)
    return out


class _QATask(EvalTask):
    """A multiple-choice benchmark: letter parsing with a counted, seeded fallback."""

    benchmark = ""
    group_key = "task"

    def parse(self, e: dict[str, Any]) -> P.ParseResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        out_dir = Path(out_dir)
        stats = P.ParseStats(max_examples=self.cfg.max_examples)
        rows = []
        fallbacks = 0
        for e in entries:
            m = e["meta"]
            if "error" in e:
                res = P.ParseResult.failure("video could not be decoded")
            else:
                res = stats.add(self.benchmark, self.parse(e), e["answer"], e["id"])
            letter = P.answer_or_fallback(res, self.benchmark, e["id"], seed=self.cfg.seed)
            fallbacks += not res.ok
            row = {"id": e["id"], self.group_key: m.get(self.group_key), "pred": letter, "parsed": res.ok,
                   "answer": m.get("answer"), "output": e.get("answer"), "video": e["video"]}
            if m.get("answer") is not None:
                row["correct"] = letter == m["answer"]
            rows.append(row)
        files = {"predictions": _write_json(out_dir / f"fmt_{self.benchmark}_predictions.json", rows)}
        files.update(self.extra_files(rows, out_dir))
        scored = [r for r in rows if "correct" in r]
        metrics = _accuracy(scored, self.group_key)
        counts = {**_counts(entries), "parse_failures": stats.unparseable(self.benchmark), "fallbacks": fallbacks,
                  "scored": len(scored)}
        return TaskOutput(metrics, stats, counts, files, _decode_failures(entries, self.cfg.max_examples))

    def extra_files(self, rows: list[dict[str, Any]], out_dir: Path) -> dict[str, str]:
        return {}


class MVBenchTask(_QATask):
    """MVBench: 20 tasks, `(X)` in the first output line, fallback `A` (`evaluate_mvbench.py`)."""

    name = benchmark = "mvbench"

    def _task_files(self) -> dict[str, dict[str, str]]:
        tasks = self.cfg.extra.get("tasks")
        if tasks:
            return {name: {"json": spec["json"], "prefix": spec.get("prefix", "")} for name, spec in tasks.items()}
        anno = Path(self._require("anno_path"))
        return {p.stem: {"json": p.name, "prefix": p.stem} for p in sorted(anno.glob("*.json"))}

    def build_samples(self) -> list[EvalSample]:
        anno = Path(self._require("anno_path"))
        root = Path(self._require("videos_dir"))
        samples = []
        for task, spec in self._task_files().items():
            data = _read_json(anno / spec["json"], f"MVBench json of task {task!r}")
            for k, q in enumerate(data):
                for key in ("video", "question", "candidates", "answer"):
                    if key not in q:
                        raise ValueError(f"{anno / spec['json']}: item {k} has no {key!r}")
                prompt = prompts_mod.mvbench_prompt(q["question"], q["candidates"])
                samples.append(EvalSample(f"{task}/{k}", str(root / spec["prefix"] / q["video"]), prompt, None,
                                          {"task": task, "answer": prompts_mod.mvbench_answer_letter(q["candidates"], q["answer"]),
                                           "num_options": len(q["candidates"])}))
        return self.limit(samples)

    def parse(self, e: dict[str, Any]) -> P.ParseResult:
        return P.parse_mvbench_answer(e["answer"], e["meta"].get("num_options"))


_TC_GT_LETTER = re.compile(r"^\s*\(?([A-Z])[.):]")


def tempcompass_gt(task_type: str, answer: Any) -> str | None:
    """The comparable form of a TempCompass gt answer (letter / yes|no / label), None if unknown."""
    if answer is None:
        return None
    text = str(answer).strip()
    if task_type == "multi-choice":
        m = _TC_GT_LETTER.match(text)
        return m.group(1) if m else None
    if task_type == "yes_no":
        return text.lower() if text.lower() in ("yes", "no") else None
    if task_type == "caption_matching":
        head = text.split(":", 1)[0].strip()
        return head.lower() or None
    return None


class TempCompassTask(EvalTask):
    """TempCompass (`evaluate_tempcompass.py`); rule-based accuracy where a gt answer is comparable."""

    name = benchmark = "tempcompass"

    def build_samples(self) -> list[EvalSample]:
        anno = Path(self._require("anno_path"))
        types = self.cfg.extra.get("task_types") or list(prompts_mod.TEMPCOMPASS_TASK_TYPES)
        samples = []
        for task_type in types:
            data = _read_json(anno / f"{task_type}.json", f"TempCompass {task_type} questions")
            for vid, dims in data.items():
                for dim, questions in dims.items():
                    for k, q in enumerate(questions):
                        if "question" not in q:
                            raise ValueError(f"{anno / (task_type + '.json')}: {vid}/{dim}/{k} has no 'question'")
                        labels = (prompts_mod.tempcompass_caption_labels(q["question"])
                                  if task_type == "caption_matching" else None)
                        samples.append(EvalSample(
                            f"{task_type}/{vid}/{dim}/{k}", self.video_path(f"{vid}.mp4"),
                            prompts_mod.tempcompass_prompt(q["question"], task_type, labels), None,
                            {"task_type": task_type, "dimension": dim, "video_id": vid, "question": q["question"],
                             "answer": q.get("answer"), "labels": list(labels) if labels else None}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        out_dir = Path(out_dir)
        stats = P.ParseStats(max_examples=self.cfg.max_examples)
        rows = []
        for e in entries:
            m = e["meta"]
            tt = m["task_type"]
            key = f"{self.benchmark}/{tt}"
            pred = None
            if "error" not in e:
                res = stats.add(key, P.parse_tempcompass_answer(e["answer"], tt, labels=m.get("labels")),
                                e["answer"], e["id"])
                pred = res.value if res.ok else None
            row = {"id": e["id"], "task_type": tt, "dimension": m["dimension"], "video_id": m["video_id"],
                   "question": m["question"], "output": e.get("answer"), "pred": pred, "answer": m.get("answer")}
            gt = tempcompass_gt(tt, m.get("answer"))
            if gt is not None:
                norm = pred.lower() if isinstance(pred, str) and tt == "caption_matching" else pred
                row["correct"] = norm == gt
            rows.append(row)
        files = {"predictions": _write_json(out_dir / "fmt_tempcompass_predictions.json", rows)}
        metrics: dict[str, Any] = {}
        for tt in sorted({r["task_type"] for r in rows}):
            scored = [r for r in rows if r["task_type"] == tt and "correct" in r]
            for k, v in _accuracy(scored, "dimension").items():
                metrics[f"{tt}/{k}"] = v
        counts = {**_counts(entries), "parse_failures": sum(stats.unparseable(t) for t in stats.tasks),
                  "scored": sum(1 for r in rows if "correct" in r)}
        notes = ["TempCompass accuracy here is rule-based; the official scorer is LLM-assisted. "
                 "Captioning answers are predictions only."]
        return TaskOutput(metrics, stats, counts, files, _decode_failures(entries, self.cfg.max_examples), notes=notes)


class EgoSchemaTask(_QATask):
    """EgoSchema (`evaluate_egoschema.py`): first capital A-E anywhere; seeded fallback."""

    name = benchmark = "egoschema"
    group_key = "split"

    def build_samples(self) -> list[EvalSample]:
        anno = self._require("anno_path")
        data = _read_json(anno, "EgoSchema questions")
        answers_file = self.cfg.extra.get("answers")
        answers = {str(k): int(v) for k, v in _read_json(answers_file, "EgoSchema answers").items()} if answers_file else {}
        subset_only = bool(self.cfg.extra.get("subset_only", bool(answers)))
        samples = []
        for k, q in enumerate(data):
            uid = q.get("q_uid")
            if uid is None or "question" not in q:
                raise ValueError(f"{anno}: item {k} needs 'q_uid' and 'question'")
            if subset_only and str(uid) not in answers:
                continue
            options = [q.get(f"option {i}", "") for i in range(5)]
            gt = answers.get(str(uid))
            samples.append(EvalSample(str(uid), self.video_path(f"{uid}.mp4"),
                                      prompts_mod.egoschema_prompt(q["question"], options), None,
                                      {"split": "subset" if gt is not None else "full",
                                       "answer": "ABCDE"[gt] if gt is not None else None}))
        return self.limit(samples)

    def parse(self, e: dict[str, Any]) -> P.ParseResult:
        return P.parse_egoschema_answer(e["answer"])

    def extra_files(self, rows: list[dict[str, Any]], out_dir: Path) -> dict[str, str]:
        path = out_dir / "output.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["q_uid", "answer"])
            for r in rows:
                w.writerow([r["id"], "ABCDE".index(r["pred"])])
        return {"kaggle_csv": str(path)}


_OPTION_PREFIX = re.compile(r"^\s*\(?[A-D][.)]\s*")


class VideoMMETask(_QATask):
    """Video-MME without subtitles (`evaluate_videomme.py`): first `(X)`; seeded fallback."""

    name = benchmark = "videomme"
    group_key = "duration"

    def build_samples(self) -> list[EvalSample]:
        anno = self._require("anno_path")
        data = _read_json(anno, "Video-MME annotations")
        flat = []
        for k, rec in enumerate(data):
            vid = rec.get("videoID") or rec.get("video_id")
            if vid is None:
                raise ValueError(f"{anno}: record {k} has no 'videoID'")
            for q in rec.get("questions", [rec]):
                flat.append((vid, rec.get("duration"), q))
        samples = []
        for vid, duration, q in flat:
            for key in ("question_id", "question", "options"):
                if key not in q:
                    raise ValueError(f"{anno}: a question of video {vid} has no {key!r}")
            options = [_OPTION_PREFIX.sub("", o, count=1) for o in q["options"]]
            samples.append(EvalSample(str(q["question_id"]), self.video_path(f"{vid}.mp4"),
                                      prompts_mod.videomme_prompt(q["question"], options), None,
                                      {"duration": duration, "answer": q.get("answer"), "task_type": q.get("task_type")}))
        return self.limit(samples)

    def parse(self, e: dict[str, Any]) -> P.ParseResult:
        return P.parse_videomme_answer(e["answer"])
