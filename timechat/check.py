"""Preflight: every path a config names and what can be checked without building a model.

`train.py` and `evaluate.py` call `preflight(cfg, kind)` before anything heavy is built; the same
check stands alone for a user setting up a machine:

    python -m timechat.check --cfg-path eval_configs/timechat_tvg_charades.yaml [key=value ...]

What is checked:

* the `model` section: preset name and `model.config` overrides, every file of `model.files`
  (ViT, Q-Former, LLaMA directory, checkpoints), the tokenizers;
* evaluation: `eval.checkpoint` (and, with `eval.model_from_checkpoint`, the model section saved with
  it, which then replaces the config's), the annotation / ground-truth files and whether their first
  records have the shape the task reads, the prompt (a known name or a file) and its placeholders
  against the task, the videos folder (a sample of the annotated videos, with the count), the ASR
  folder, the frame count against the model's frame-position table (`max_frame_pos`);
* training: each `datasets.<name>` records file (and a sample of its videos), the feature cache, the
  frame count of each dataset.

Every problem is collected and printed at once as one table (config key, resolved absolute path,
the root it came from and how to change it, what belongs there); `PreflightError` carries them.
Warnings (a few sampled videos missing) are printed but do not stop a run.
"""

from __future__ import annotations

import os
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from timechat.io import DataFileError, read_json, read_jsonl
from timechat.validation import ConfigValueError

README_CKPT = 'README "Checkpoints layout (real recipe)"'
README_DATA = 'README "Data layout (real recipe)"'
README_OWN = 'README "Evaluate your own videos"'
ROOT_ENV = {"data_root": "TIMECHAT_DATA_ROOT", "ckpt_root": "TIMECHAT_CKPT_ROOT", "output_root": "TIMECHAT_OUTPUT_ROOT"}
VIDEO_SAMPLE = 50
"""Annotated videos looked up per annotation/records file (spread over the file)."""
PEEK_RECORDS = 5
"""Records whose shape is checked per annotation file."""
QUERY_TASKS = ("tvg", "vhd")
TIME_TASKS = ("tvg", "dvc", "vhd")

EXPECTED_FILES = {
    "vit": f"EVA ViT-g weights, eva_vit_g.pth ({README_CKPT})",
    "qformer": f"InstructBLIP Q-Former weights, instruct_blip_vicuna7b_trimmed.pth ({README_CKPT})",
    "llama": f"the HF LLaMA-2 directory (config.json, weights, tokenizer) ({README_CKPT})",
    "bert_tokenizer": f"a bert-base-uncased tokenizer directory (vocab.txt) ({README_CKPT})",
    "ckpt": f"an original-layout checkpoint .pth (VL_LLaMA_2_7B_Finetuned.pth or timechat_7b.pth) ({README_CKPT})",
    "ckpt_2": f"a second original-layout checkpoint .pth ({README_CKPT})",
}


@dataclass
class Problem:
    """One thing a run would trip over.

    Attributes:
        key: the config key, as the user writes it (`model.files.llama`, `eval.num_frames`).
        message: what is wrong.
        path: the resolved absolute path ('' when the problem is not about a path).
        root: which root the path came from and how to change it ('' when none).
        expected: what belongs there (with a README pointer).
        fatal: False for a warning that does not stop the run.
    """

    key: str
    message: str
    path: str = ""
    root: str = ""
    expected: str = ""
    fatal: bool = True


class PreflightError(RuntimeError):
    """The config names things that are missing or inconsistent; `problems` lists every one."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        super().__init__(format_problems(problems, source))


# ---------------------------------------------------------------------------------------------- roots
def _roots(cfg: DictConfig) -> dict[str, Path]:
    paths = OmegaConf.to_container(cfg.paths, resolve=True) if "paths" in cfg else {}
    return {name: Path(str(paths.get(name, ""))).expanduser().absolute() for name in ROOT_ENV if paths.get(name)}


def _root_note(path: Path, roots: dict[str, Path], cfg: DictConfig) -> str:
    """Which `paths.*` root `path` lies under, its value and source, and how to change it."""
    best = None
    for name, root in roots.items():
        if path == root or root in path.parents:
            if best is None or len(str(root)) > len(str(roots[best])):
                best = name
    if best is None:
        return "an absolute/relative path set directly in the config; change the key itself (key=value)"
    env = ROOT_ENV[best]
    value = cfg.paths[best]
    if os.environ.get(env) is not None and str(os.environ[env]) != str(value):
        source = f", overriding ${env}"
    elif os.environ.get(env) is not None:
        source = f", from ${env}"
    else:
        source = ""
    return f"paths.{best}={value}{source} -> {roots[best]}  (change: paths.{best}=DIR or {env}=DIR)"


class _Collector:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.roots = _roots(cfg)
        self.problems: list[Problem] = []
        self.notes: list[str] = []

    def add(self, key: str, message: str, path: str | Path | None = None, expected: str = "",
            fatal: bool = True) -> None:
        p = Path(str(path)).expanduser().absolute() if path not in (None, "") else None
        self.problems.append(Problem(key, message, str(p) if p else "", _root_note(p, self.roots, self.cfg) if p else "",
                                     expected, fatal))

    def need(self, key: str, path: str | Path | None, kind: str, expected: str) -> bool:
        """Record a problem unless `path` is an existing file (`kind` 'file'), folder ('dir') or either ('any')."""
        if path in (None, ""):
            self.add(key, "not set", None, expected)
            return False
        p = Path(str(path)).expanduser()
        ok = {"file": p.is_file, "dir": p.is_dir, "any": p.exists}[kind]()
        if not ok:
            what = {"file": "file", "dir": "folder", "any": "file or folder"}[kind]
            found = " (a folder is there)" if kind == "file" and p.is_dir() else (
                " (a file is there)" if kind == "dir" and p.is_file() else "")
            self.add(key, f"missing {what}{found}", p, expected)
        return ok


# ---------------------------------------------------------------------------------------------- model
def _check_model(c: _Collector, section: dict[str, Any], where: str = "model") -> Any:
    """Files, tokenizers and the architecture of a model section; returns its TimeChatConfig (or None)."""
    from timechat.factory import model_config_from, resolve_tokenizer_dir
    from timechat.models.builders import ModelFiles

    from timechat import registry

    model_cfg = None
    name = section.get("name", "timechat_7b")
    if name not in registry.MODELS:
        c.add(f"{where}.name", f"unknown model preset {name!r}; known: {sorted(registry.MODELS)}")
    else:
        try:
            model_cfg = model_config_from(section)
        except (KeyError, TypeError, ValueError) as exc:
            c.add(f"{where}.config", _one_line(exc))
    try:
        files = ModelFiles.from_dict(section.get("files"))
    except (KeyError, TypeError) as exc:
        c.add(f"{where}.files", _one_line(exc))
        return model_cfg
    for name, expected in EXPECTED_FILES.items():
        path = files.resolve(name)
        if path is None:
            continue
        c.need(f"{where}.files.{name}", path, "dir" if name in ("llama", "bert_tokenizer") else "file", expected)
    for key in ("tokenizer", "bert_tokenizer"):
        value = section.get(key)
        if value in (None, ""):
            if key == "tokenizer" and files.resolve("llama") is None:
                c.add(f"{where}.tokenizer", "no LLaMA tokenizer: set model.tokenizer or model.files.llama",
                      expected=f"a LLaMA tokenizer directory ({README_CKPT})")
            continue  # the model.files fallback (llama / bert_tokenizer) is checked above
        try:
            path = resolve_tokenizer_dir(value)
        except FileNotFoundError as exc:
            c.add(f"{where}.{key}", _one_line(exc))
            continue
        c.need(f"{where}.{key}", path, "dir", EXPECTED_FILES["llama" if key == "tokenizer" else "bert_tokenizer"])
    return model_cfg


def _check_frames(c: _Collector, where: str, budget: Any, model_cfg: Any, model_key: str = "model") -> None:
    """The frame budget (`FrameBudget`) of `where` (`eval`, `datasets.x`) against the position table."""
    if model_cfg is None or model_cfg.position_overflow != "error":
        return  # the table is stretched to any length
    key = f"{where}.num_frames" if budget.fps is None else f"{where}.max_frames"
    largest = budget.largest
    if largest is None or int(largest) > model_cfg.max_frame_pos:
        got = "no frame cap (fps without max_frames)" if largest is None else f"{largest} frames"
        c.add(key, f"{got}, but the model's frame-position table has {model_cfg.max_frame_pos} rows "
                   f"({model_key}.config.max_frame_pos) and {model_key}.config.position_overflow is 'error'",
              expected=f"{key}<={model_cfg.max_frame_pos}, or {model_key}.config.position_overflow: nearest|linear")


# ---------------------------------------------------------------------------------------------- videos
def _check_videos(c: _Collector, key: str, folder: Path, names: list[str], expected: str) -> None:
    """Look up a spread sample of the annotated videos; all missing is an error, some a warning."""
    from timechat.eval.tasks.base import spread

    unique = list(dict.fromkeys(names))
    if not unique:
        return
    sample = spread(unique, VIDEO_SAMPLE)
    missing = [n for n in sample if not (folder / n).is_file()]
    summary = f"{len(sample) - len(missing)} of {len(sample)} sampled videos present ({len(unique)} videos annotated)"
    c.notes.append(f"{key}: {summary}")
    if missing:
        c.add(key, f"{summary}; missing e.g. {missing[:3]}", folder, expected, fatal=len(missing) == len(sample))


# ---------------------------------------------------------------------------------------------- eval
def _template_problem(task: str, template: str, dataset: str) -> str | None:
    """Why `template` cannot be the prompt of `task` (None when it fits)."""
    from timechat.eval.tasks.common import fill_query_prompt

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"malformed braces ({exc})"
    if task in QUERY_TASKS:
        try:
            fill_query_prompt(template, dataset, "a query")
        except (ValueError, IndexError, KeyError) as exc:
            return _one_line(exc)
        return None
    if task == "dvc" and fields:
        shown = ["{" + f + "}" for f in fields]
        return (f"a DVC prompt is sent as it is, but this template has placeholders {shown} (a TVG/VHD query "
                f"template?); they would reach the model unfilled")
    return None


def _prompt_key(ecfg: Any) -> str:
    return "eval.prompt_template" if ecfg.prompt_template else "eval.prompt"


def _check_prompts(c: _Collector, ecfg: Any) -> None:
    from timechat.eval.tasks.dense_captioning import DVC_PROMPTS
    from timechat.eval.tasks.grounding import TVG_PROMPTS
    from timechat.eval.tasks.highlights import VHD_PROMPTS
    from timechat.eval.tasks.prompts import resolve_prompt

    tables = {"dvc": DVC_PROMPTS, "tvg": TVG_PROMPTS, "vhd": VHD_PROMPTS}
    expected = f"a prompt name of task {ecfg.task} ({sorted(tables.get(ecfg.task, {}))}) or a prompt file"
    for key, value in (("eval.prompt", ecfg.prompt), ("eval.post_check_prompt", ecfg.post_check_prompt)):
        if key == "eval.prompt" and (ecfg.prompt_template or ecfg.task not in TIME_TASKS):
            continue  # not used
        if not value:
            continue
        try:
            resolve_prompt(value)
        except FileNotFoundError:
            c.add(key, "neither a known prompt name nor a prompt file", value, expected)
        except ValueError as exc:
            c.add(key, _one_line(exc), value, expected)
        if ecfg.task in TIME_TASKS and key == "eval.prompt":
            other = [t for t, table in tables.items() if value in table and t != ecfg.task]
            if other:
                c.add(key, f"{value!r} is a {other[0]} prompt, but eval.task={ecfg.task}", expected=expected)
                return
    if ecfg.task not in TIME_TASKS:
        return
    try:
        template = ecfg.prompt_template or resolve_prompt(ecfg.prompt)
    except (FileNotFoundError, ValueError):
        return  # reported above
    why = _template_problem(ecfg.task, template, ecfg.dataset)
    if why:
        c.add(_prompt_key(ecfg), f"does not fit eval.task={ecfg.task}: {why}",
              expected=f"{expected}; query tasks use {{query}} (and {{dataset}}) ({README_OWN})")


def _peek_json(c: _Collector, key: str, path: Path) -> Any:
    try:
        return read_jsonl(path) if path.suffix == ".jsonl" else read_json(path)
    except DataFileError as exc:
        c.add(key, f"not valid JSON{' Lines' if path.suffix == '.jsonl' else ''} ({exc.reason})", path)
        return None


ANNOTATION_SHAPES = {
    "tvg": ("COCO caption file: {\"annotations\": [{\"image_id\": \"video.mp4\", \"caption\": \"query\", "
            "\"timestamp\": [start, end], \"id\": 0}]}"),
    "dvc": ("COCO caption file, one entry per video: {\"annotations\": [{\"image_id\": \"video.mp4\", "
            "\"segments\": [[s, e], ...], \"pure_cap\": \"caption 1. caption 2.\", \"duration\": seconds}]}"),
    "vhd": ("QVHighlights JSON Lines ({\"qid\", \"query\", \"vid\", \"duration\", ...} per line) or a TVG-style "
            "COCO file with \"duration\""),
}


def _annotation_kind(rec: dict[str, Any]) -> str:
    if "segments" in rec or "pure_cap" in rec:
        return "dvc"
    if "qid" in rec and "query" in rec:
        return "vhd"
    if "caption" in rec and ("timestamp" in rec or "id" in rec):
        return "tvg"
    return "unknown"


def _check_annotations(c: _Collector, ecfg: Any) -> list[str]:
    """The annotation file's shape against the task; returns the annotated video file names."""
    key, path = "eval.anno_path", Path(ecfg.anno_path).expanduser()
    expected = f"{ANNOTATION_SHAPES.get(ecfg.task, 'the annotation file of task ' + ecfg.task)} ({README_OWN})"
    if not ecfg.anno_path:
        c.add(key, f"not set (task {ecfg.task} reads its samples from it)", expected=expected)
        return []
    if not c.need(key, path, "file" if ecfg.task in TIME_TASKS else "any", expected) or ecfg.task not in TIME_TASKS:
        return []
    data = _peek_json(c, key, path)
    if data is None:
        return []
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        records = data["annotations"]
    elif isinstance(data, list) and path.suffix == ".jsonl":
        records = data
    else:
        c.add(key, "not an object with an 'annotations' list" + (" (nor JSON Lines)" if ecfg.task == "vhd" else ""),
              path, expected)
        return []
    if not records:
        c.add(key, "has no annotations", path, expected)
        return []
    needs = {"tvg": ("image_id", "caption", "id"), "dvc": ("image_id",),
             "vhd": ("qid", "query", "vid") if path.suffix == ".jsonl" else ("image_id", "caption", "id")}[ecfg.task]
    for k, rec in enumerate(records[:PEEK_RECORDS]):
        if not isinstance(rec, dict):
            c.add(key, f"annotation {k} is {type(rec).__name__}, not an object", path, expected)
            return []
        kind = _annotation_kind(rec)
        lacking = [f for f in needs if f not in rec]
        if kind not in ("unknown", ecfg.task) and not (ecfg.task == "vhd" and kind == "tvg"):
            c.add(key, f"looks like a {kind.upper()} annotation (keys {sorted(rec)}), but eval.task={ecfg.task}",
                  path, expected)
            return []
        if lacking:
            c.add(key, f"annotation {k} lacks {lacking} (keys {sorted(rec)})", path, expected)
            return []
        if ecfg.task == "dvc" and not isinstance(rec.get("segments"), list):
            c.add(key, f"annotation {k} has no 'segments' list of [start, end]", path, expected)
            return []
    if path.suffix == ".jsonl":
        return [f"{r.get('vid')}.mp4" for r in records if isinstance(r, dict)]
    return [str(r.get("image_id")).split("/")[-1] for r in records if isinstance(r, dict)]


def _check_eval(c: _Collector, resolved: dict[str, Any]) -> None:
    from timechat.config import EvalConfig
    from timechat.eval.run import effective_model_section

    try:
        ecfg = EvalConfig(**resolved["eval"])
    except (TypeError, ValueError) as exc:
        c.add("eval", _one_line(exc))
        return
    from timechat import registry

    if ecfg.task not in registry.TASKS:
        c.add("eval.task", f"unknown task {ecfg.task!r}; known: {sorted(registry.TASKS)}")
        return
    model_key = "model"
    try:
        section, kind, path, source = effective_model_section(resolved, ecfg)
        if source != "config":
            model_key = f"model (read from {source})"
    except (FileNotFoundError, ValueError, KeyError) as exc:
        key = "eval.train_dir" if "train_dir" in str(exc) and ecfg.checkpoint == "latest" else "eval.checkpoint"
        c.add(key, _one_line(exc), ecfg.checkpoint if ecfg.checkpoint not in (None, "latest") else ecfg.train_dir,
              "a training step folder (trainable.safetensors), a training output_dir, an original .pth, or null "
              "(the model files as configured; random init for the tiny preset); train first: "
              "python train.py --cfg-path train_configs/...")
        section = resolved["model"]
    model_cfg = _check_model(c, section, model_key)
    _check_frames(c, "eval", ecfg.frame_budget, model_cfg, model_key)
    _check_prompts(c, ecfg)
    videos = _check_annotations(c, ecfg)
    if ecfg.gt_file and ecfg.gt_file != ecfg.anno_path:
        c.need("eval.gt_file", ecfg.gt_file, "file", f"the ground truth the metric reads ({README_DATA})")
    if ecfg.task == "vhd" and not ecfg.gt_file:
        c.add("eval.gt_file", "not set (the VHD metric reads the QVHighlights jsonl)",
              expected=f"highlight_{{split}}_release.jsonl ({README_DATA})")
    vexp = f"the videos named by eval.anno_path, by file name ({README_DATA})"
    if ecfg.videos_dir:
        if c.need("eval.videos_dir", ecfg.videos_dir, "dir", vexp):
            _check_videos(c, "eval.videos_dir", Path(ecfg.videos_dir).expanduser(), videos, vexp)
    elif ecfg.task in TIME_TASKS:
        c.add("eval.videos_dir", "not set", expected=vexp)
    if ecfg.asr:
        c.need("eval.asr_dir", ecfg.asr_dir, "dir", f"one transcript .txt per video ({README_DATA})")


# ---------------------------------------------------------------------------------------------- train
def _check_train(c: _Collector, resolved: dict[str, Any]) -> None:
    from timechat.data.settings import FRAME_BUDGET_KEYS, DataSettings, FrameBudget

    run = resolved.get("run") or {}
    synthetic = (run.get("synthetic_data") or {}).get("out_dir")
    generated = Path(synthetic).expanduser().absolute() if synthetic else None
    model_cfg = _check_model(c, resolved.get("model") or {})
    if run.get("resume") not in (None, "auto"):
        c.need("run.resume", run["resume"], "any", "a training checkpoint step folder (or auto / null)")
    sections = resolved.get("datasets") or {}
    if not sections:
        c.add("datasets", "no datasets: nothing to train on", expected=f"datasets.<name>.records ({README_DATA})")
    for name, entry in sections.items():
        where = f"datasets.{name}"
        entry = dict(entry or {})
        try:
            frames = FrameBudget(**{k: entry.get(k, getattr(DataSettings, k)) for k in FRAME_BUDGET_KEYS})
        except ValueError as exc:
            c.add(where, _one_line(exc), expected="a valid frame budget (timechat.data.settings.FrameBudget)")
        else:
            _check_frames(c, where, frames, model_cfg)

        def later(path: Any) -> bool:  # made by run.synthetic_data before the datasets are read
            p = Path(str(path)).expanduser().absolute()
            return generated is not None and (p == generated or generated in p.parents)

        records = entry.get("records")
        rexp = f"a TimeIT-format JSON list [{{\"video\": \"rel/path.mp4\", \"QA\": [{{\"q\", \"a\"}}]}}] ({README_DATA})"
        if isinstance(records, (list, tuple)):
            continue
        if records and later(records) and not Path(records).is_file():
            c.notes.append(f"{where}.records: generated by run.synthetic_data on first use")
            continue
        if not c.need(f"{where}.records", records, "file", rexp):
            if entry.get("videos_root") is not None:
                c.need(f"{where}.videos_root", entry.get("videos_root"), "dir",
                       f"the videos the records name, relative to this folder ({README_DATA})")
            continue
        data = _peek_json(c, f"{where}.records", Path(records))
        if data is None:
            continue
        if not isinstance(data, list) or not data:
            c.add(f"{where}.records", "expected a non-empty JSON list of records", records, rexp)
            continue
        bad = [k for k, r in enumerate(data[:PEEK_RECORDS]) if not (isinstance(r, dict) and isinstance(r.get("video"), str)
                                                                    and isinstance(r.get("QA"), list))]
        if bad:
            c.add(f"{where}.records", f"record {bad[0]} is not {{\"video\": str, \"QA\": [...]}}", records, rexp)
            continue
        root = entry.get("videos_root")
        vexp = f"the videos the records name, relative to this folder ({README_DATA})"
        if root is None:
            c.add(f"{where}.videos_root", "not set", expected=vexp)
        elif c.need(f"{where}.videos_root", root, "dir", vexp):
            _check_videos(c, f"{where}.videos_root", Path(root).expanduser(), [r["video"] for r in data], vexp)
        cache = entry.get("feature_cache")
        if cache and not run.get("build_feature_cache") and not later(cache):
            c.need(f"{where}.feature_cache", cache, "dir",
                   "features built by scripts/build_feature_cache.py (or set run.build_feature_cache=true)")


# ---------------------------------------------------------------------------------------------- entry
def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split())


def _output_dir_problem(c: _Collector, resolved: dict[str, Any]) -> None:
    out = resolved.get("output_dir")
    if not out:
        return
    p = Path(str(out)).expanduser().absolute()
    existing = next((q for q in (p, *p.parents) if q.exists()), None)
    if existing is not None and (not existing.is_dir() or not os.access(existing, os.W_OK)):
        c.add("output_dir", f"cannot be created: {existing} is not a writable folder", p,
              "a folder this user can write (usually ${paths.output_root}/<name>)")


def check_config(cfg: DictConfig, kind: str) -> tuple[list[Problem], list[str]]:
    """Every problem of `cfg` for a `kind` ('train' or 'eval') run, and informational notes."""
    from timechat.config import resolve_config

    if kind not in ("train", "eval"):
        raise ValueError(f"kind must be 'train' or 'eval', got {kind!r}")
    c = _Collector(cfg)
    try:
        resolved = resolve_config(cfg)
    except Exception as exc:  # interpolation / dataclass validation: one line naming the key
        c.add("config", _one_line(exc))
        return c.problems, c.notes
    if "model" not in resolved:
        c.add("model", "no `model` section")
    elif kind == "eval":
        if "eval" not in resolved:
            c.add("eval", "no `eval` section")
        else:
            _check_eval(c, resolved)
    else:
        _check_train(c, resolved)
    _output_dir_problem(c, resolved)
    return c.problems, c.notes


def format_problems(problems: Iterable[Problem], source: str = "") -> str:
    """One table: key | problem | path, each row followed by its root and what belongs there."""
    problems = list(problems)
    errors = sum(p.fatal for p in problems)
    head = (f"preflight{' of ' + source if source else ''}: {errors} problem(s)"
            + (f", {len(problems) - errors} warning(s)" if len(problems) > errors else "")
            + (" - nothing was built" if errors else ""))
    width = max([len("KEY")] + [len(p.key) for p in problems])
    lines = [head, f"  {'KEY':<{width}}  PROBLEM -> PATH"]
    for p in problems:
        flag = "" if p.fatal else "(warning) "
        lines.append(f"  {p.key:<{width}}  {flag}{p.message}" + (f" -> {p.path}" if p.path else ""))
        pad = " " * (width + 4)
        if p.root:
            lines.append(f"{pad}root: {p.root}")
        if p.expected:
            lines.append(f"{pad}expects: {p.expected}")
    if any(p.root for p in problems):
        lines.append("Roots: a YAML's `paths:` block wins over the TIMECHAT_*_ROOT variables; key=value on the "
                     "command line wins over both. Layouts: " + README_CKPT + ", " + README_DATA + ".")
    return "\n".join(lines)


def preflight(cfg: DictConfig, kind: str, source: str = "", stream: Any = None) -> list[Problem]:
    """Check `cfg`; print warnings to `stream` (stderr); raise `PreflightError` listing every problem.

    Returns:
        The (non-fatal) warnings.
    """
    problems, _ = check_config(cfg, kind)
    if any(p.fatal for p in problems):
        raise PreflightError(problems, source)
    if problems:
        print(format_problems(problems, source), file=stream or sys.stderr)
    return problems


# ---------------------------------------------------------------------------------------------- entry points
DEBUG_ENV = "TIMECHAT_DEBUG"
"""Set to 1 (or pass --debug to train.py / evaluate.py) to see the traceback of a failed run."""
QUIET_ON_OTHER_RANKS = (PreflightError, KeyError, TypeError, ValueError, FileNotFoundError)
"""Errors every rank meets identically (config and preflight): only rank 0 says them."""


def cfg_path_of(argv: list[str]) -> str:
    """The `--cfg-path` value of an entry point's command line ('' if absent)."""
    for k, a in enumerate(argv):
        if a in ("--cfg-path", "--cfg_path") and k + 1 < len(argv):
            return argv[k + 1]
        if a.startswith(("--cfg-path=", "--cfg_path=")):
            return a.split("=", 1)[1]
    return ""


def split_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """`argv` without `--debug`, and whether a traceback was asked for (`--debug` or TIMECHAT_DEBUG=1)."""
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    return [a for a in argv if a != "--debug"], debug


def report_failure(exc: BaseException, *, rank: int, debug: bool, stream: Any = None) -> int:
    """Say why a run stopped, once: rank 0 prints one line (the problem table of a preflight),
    other ranks stay quiet for errors every rank meets the same way; the traceback only when `debug`.

    Returns:
        The exit status: 2 for a preflight / config error, 1 otherwise.
    """
    import traceback

    stream = stream or sys.stderr
    status = 2 if isinstance(exc, (PreflightError, KeyError, TypeError, ConfigValueError)) or type(exc).__module__.startswith("omegaconf") else 1
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=stream)
    elif rank != 0 and isinstance(exc, QUIET_ON_OTHER_RANKS):
        return status
    if isinstance(exc, PreflightError):
        print(str(exc), file=stream)
    else:
        # A crash that happens on one rank only would be invisible if only rank 0 spoke.
        where = f"[rank {rank}] " if rank else ""
        kind = "" if isinstance(exc, QUIET_ON_OTHER_RANKS) else f" ({type(exc).__name__})"
        # One line, the hint included: a config error is the message naming the key, nothing else.
        hint = "" if debug else f" (traceback: rerun with --debug or {DEBUG_ENV}=1)"
        print(f"{where}error{kind}: {_one_line(exc)}{hint}", file=stream)
    return status


def main(argv: list[str] | None = None) -> int:
    """`python -m timechat.check --cfg-path X [--kind train|eval] [key=value ...]`: 0 when all is there."""
    import argparse

    from timechat.config import load_config

    parser = argparse.ArgumentParser(description="Check every path and setting a config names, without building a model.")
    parser.add_argument("--cfg-path", "--cfg_path", required=True)
    parser.add_argument("--kind", choices=("train", "eval"), default=None,
                        help="default: eval when the config has an `eval` section")
    parser.add_argument("--options", nargs="*", default=[])
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.cfg_path, list(args.options) + list(args.overrides))
    except Exception as exc:  # config errors: one line naming the key
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    kind = args.kind or ("eval" if "eval" in cfg else "train")
    problems, notes = check_config(cfg, kind)
    for note in notes:
        print(f"  {note}")
    if problems:
        print(format_problems(problems, args.cfg_path), file=sys.stderr)
    if any(p.fatal for p in problems):
        return 2
    print(f"preflight of {args.cfg_path}: everything the {kind} config names is there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
