"""QA-benchmark parity (MVBench, TempCompass, EgoSchema, Video-MME) against the original's goldens.

`check_reference_benchmarks` checks a ``reference_benchmarks``-layout folder, driven only by its
``manifest.json`` (benchmarks, runs and their arguments, cases, extraction tables, pixel dumps,
output files): no case id, count, video or file name is written here, so an unseen set of the same
layout is checked the same way.

For every run the product's own task (`timechat.registry.TASKS`) builds the samples from the run's
``anno_path`` / ``video_path``; every sample's frames are read as `InferenceEngine` reads them
(`timechat.data.video.load_eval_clip`), its conversation built with `ChatState`, its context with
the LLaMA tokenizer, and the stand-in model's recorded reply goes through `postprocess_answer`. The
merged answers then go through the task's ``evaluate``, whose files are compared byte for byte with
the original's. Compared, per case: frame indices, fps, frame count, ``msg``, timestamps and their
sentences, timestamp token ids, the uint8 frame hashes (recovered from the model input by inverting
the normalisation, as the goldens were), the pixel sum, the prompt, segment ids, context ids and the
left cut, the answer text and its extraction / check; per run: the processing order, the skipped and
random-fallback samples, scores and output files; then the extraction tables and the raw pixel dumps.

Rows are named ``bench/<benchmark>/<case or run>/<quantity>``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from timechat.config import EvalConfig
from timechat.data.conversation import ChatState, num_video_tokens, postprocess_answer, segment_ids, split_prompt
from timechat.data.tokenization import tokenize_timestamps
from timechat.data.transforms import CLIP_MEAN, CLIP_STD, eval_transform
from timechat.data.video import VideoDecodeError, load_eval_clip
from timechat.eval.tasks.common import SYSTEM_TEXTS, SeededFallback
from timechat.eval.tasks.egoschema import egoschema_extract
from timechat.eval.tasks.mvbench import mvbench_check_ans, mvbench_first_line, mvbench_question
from timechat.eval.tasks.videomme import videomme_extract
from timechat.io import read_json
from timechat.reference.compare import ParityRow, compare_close, compare_exact
from timechat.reference.data import _guard, _Tokenizers, context_ids, sentences_from_msg
from timechat.registry import lookup

PIXEL_SUM_RTOL = 1e-6
"""manifest ``pixels.tolerance.pixel_sum_float64``."""
PIXEL_VALUES_ATOL = 1e-6
"""manifest ``pixels.tolerance.pixel_values`` (bit-exact here; the tolerance allows other operation orders)."""
IMAGE_SIZE = 224
"""The ``alpro_video_eval`` processor size of the original's eval config (and MVBench's crop)."""


# =========================================================================== run configuration
def _case_key(bench: str, case: dict[str, Any]) -> str:
    """The product's sample id of a manifest case (the id scheme of each task's `build_samples`)."""
    if bench == "mvbench":
        return f"{case['task_type']}/{case['annotation_index']}"
    if bench == "tempcompass":
        return f"{case['task_type']}/{case['vid']}/{case['dim']}/{case['question_index']}"
    if bench == "egoschema":
        return str(case["q_uid"])
    if bench == "videomme":
        return f"{case['key']}/{case['question_index']}"
    raise KeyError(f"unknown benchmark {bench!r} in the manifest")


def _preexisting(root: Path, value: Any) -> Path | None:
    """A run's ``preexisting`` entry (a path, or a dict naming one) as an absolute path."""
    if not value:
        return None
    if isinstance(value, dict):
        value = value.get("file") or value.get("path") or next((v for v in value.values() if isinstance(v, str)), None)
    return root / value if value else None


def _eval_config(root: Path, manifest: dict[str, Any], bench: str, spec: dict[str, Any], run: dict[str, Any]) -> EvalConfig:
    """The product's eval settings for one run of the original (its argparse values, paths into the fixture)."""
    args = run.get("args", {})
    seed = 42  # every main() seeds with 42 (manifest constants.seed)
    extra: dict[str, Any] = {}
    if bench == "mvbench" and spec.get("data_list"):
        extra["tasks"] = {name: {"json": d["json"], "prefix": d["prefix"], "data_type": d["data_type"],
                                 "bound": d["bound"]} for name, d in spec["data_list"].items()}
    pre = _preexisting(root, run.get("preexisting"))
    if bench == "tempcompass":
        extra["task_types"] = [args.get("task_type", run.get("name"))]
        if pre is not None:
            extra["preexisting_predictions"] = {extra["task_types"][0]: str(pre)}
    if bench == "egoschema":
        extra["subset_only"] = bool(args.get("eval_on_subset_answers", False))
        if pre is not None:
            extra["preexisting_predictions"] = str(pre)
    return EvalConfig(task=bench, anno_path=str(root / args["anno_path"]), videos_dir=str(root / args["video_path"]),
                      num_frames=int(args.get("num_frames", 96)), seed=seed, system="benchmark", extra=extra,
                      max_new_tokens=int(manifest.get("constants", {}).get("answer_call", {}).get("max_new_tokens", 512)),
                      max_context=int(manifest.get("constants", {}).get("answer_call", {}).get("max_length", 3000)))


# =========================================================================== per case
def _recovered_u8(pixels: torch.Tensor) -> np.ndarray:
    """(T, H, W, 3) uint8 recovered from the (C, T, H, W) model input by inverting the normalisation."""
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float64)[:, None, None, None]
    std = torch.tensor(CLIP_STD, dtype=torch.float64)[:, None, None, None]
    u8 = torch.round((pixels.double() * std + mean) * 255.0).clamp(0, 255).to(torch.uint8)
    return u8.permute(1, 2, 3, 0).contiguous().numpy()


def _case_rows(n: str, bench: str, task: Any, cfg: EvalConfig, sample: Any, clip: Any, exp: dict[str, Any],
               toks: Any, tok_paths: dict[str, str], dumps: dict[str, dict[str, Any]], root: Path) -> tuple[list[ParityRow], str]:
    """Rows of one case; returns (rows, the answer text the product derives from the stand-in's reply)."""
    s, p = exp["sampling"], exp["prompt"]
    rows = [
        compare_exact(f"{n}/sampling/indices", clip.indices, s["indices"]),
        compare_exact(f"{n}/sampling/fps", clip.fps, s["fps"]),
        compare_exact(f"{n}/sampling/num_frames", clip.vlen, s["num_frames"]),
        compare_exact(f"{n}/sampling/msg", clip.msg, s["msg"]),
        compare_exact(f"{n}/sampling/timestamp_strs", clip.timestamps, s["timestamp_strs"]),
        compare_exact(f"{n}/sampling/timestamp_sentences", clip.sentences, s["timestamp_sentences"]),
        compare_exact(f"{n}/sampling/sentences_from_msg", sentences_from_msg(clip.msg), s["timestamp_sentences"]),
    ]
    # timestamp tokens: the tokenizer the task declares, checked against the one the original used
    want_tok = exp["timestamps"]["tokenizer"]
    rows.append(compare_exact(f"{n}/timestamps/tokenizer", task.timestamp_tokenizer, want_tok))
    tok = toks.llama(tok_paths["llama"]) if task.timestamp_tokenizer == "llama" else toks.bert(tok_paths["bert"])
    ts = tokenize_timestamps(clip.sentences, tok)
    rows += [compare_exact(f"{n}/timestamps/input_ids", ts["input_ids"], exp["timestamps"]["input_ids"]),
             compare_exact(f"{n}/timestamps/attention_mask", ts["attention_mask"], exp["timestamps"]["attention_mask"])]
    # pixels: the tensor the model receives
    px = eval_transform(clip.frames)  # (C, T, H, W)
    u8 = _recovered_u8(px)
    rows += [
        compare_exact(f"{n}/pixels/shape", [1, *px.shape], exp["pixels"]["shape"]),
        compare_exact(f"{n}/pixels/frame_u8_sha256", [hashlib.sha256(f.tobytes()).hexdigest() for f in u8],
                      exp["pixels"]["frame_u8_sha256"]),
        compare_close(f"{n}/pixels/pixel_sum_float64", px.double().sum(), exp["pixels"]["pixel_sum_float64"], 0.0,
                      PIXEL_SUM_RTOL),
    ]
    dump = dumps.get(exp["id"])
    if dump is not None:
        rows += _dump_rows(n, dump, clip, px, root)
    # prompt and context
    llama = toks.llama(tok_paths["llama"])
    st = ChatState(system=SYSTEM_TEXTS[cfg.system])
    st.upload_video(clip.msg)
    st.ask(sample.prompt)
    user_message = st.messages[0][1]
    conversation = st.prompt_for_answer()
    segs = segment_ids(conversation, llama)
    n_vis = num_video_tokens(len(clip.indices))
    ctx = context_ids(segs, n_vis)
    begin = max(0, len(ctx) + cfg.max_new_tokens - cfg.max_context)
    rows += [
        compare_exact(f"{n}/prompt/system", st.system, p["system"]),
        compare_exact(f"{n}/prompt/user_text", sample.prompt, p["user_text"]),
        compare_exact(f"{n}/prompt/user_message", user_message, p["user_message"]),
        compare_exact(f"{n}/prompt/conversation", conversation, p["conversation"]),
        compare_exact(f"{n}/prompt/segments", split_prompt(conversation), p["segments"]),
        compare_exact(f"{n}/prompt/segment_ids", segs, p["segment_ids"]),
        compare_exact(f"{n}/prompt/num_visual_tokens", n_vis, p["num_visual_tokens"]),
        compare_exact(f"{n}/prompt/context_length", len(ctx), p["context_length"]),
        compare_exact(f"{n}/prompt/begin_idx", begin, p["begin_idx"]),
        compare_exact(f"{n}/prompt/context_ids", ctx[begin:], p["context_ids"]),
        compare_exact(f"{n}/generate/max_new_tokens", cfg.max_new_tokens, exp["generate_kwargs"]["max_new_tokens"]),
    ]
    answer = postprocess_answer(exp["fake_generated_ids"], llama)
    rows.append(compare_exact(f"{n}/chat_answer_text", answer, exp["chat_answer_text"]))
    rows += _answer_rows(n, bench, sample, answer, exp)
    return rows, answer


def _answer_rows(n: str, bench: str, sample: Any, answer: str, exp: dict[str, Any]) -> list[ParityRow]:
    """The benchmark's own handling of one answer (extraction, check, stored prediction)."""
    rows: list[ParityRow] = []
    if bench == "mvbench":
        ann = exp["annotation"]
        pred = mvbench_first_line(answer)
        rows += [compare_exact(f"{n}/question_text", mvbench_question(ann["question"], ann["candidates"]), exp["question_text"]),
                 compare_exact(f"{n}/gt_answer", sample.meta["gt"], exp["gt_answer"]),
                 compare_exact(f"{n}/pred", pred, exp["pred"]),
                 compare_exact(f"{n}/check_ans", mvbench_check_ans(pred, sample.meta["gt"]), exp["check_ans"])]
    elif bench == "tempcompass":
        rows += [compare_exact(f"{n}/input_text", "Question: " + exp["input_text"], sample.prompt),
                 compare_exact(f"{n}/stored_prediction", answer, exp["stored_prediction"])]
    elif bench in ("egoschema", "videomme"):
        ex = exp["extract_answer"]
        got = egoschema_extract(answer) if bench == "egoschema" else videomme_extract(answer)
        rows += [compare_exact(f"{n}/extract_answer/input", answer, ex["input"]),
                 compare_exact(f"{n}/extract_answer/random_fallback", got is None, ex["random_fallback"])]
        if not ex["random_fallback"]:  # drawn values are checked with the run (the k-th draw)
            rows.append(compare_exact(f"{n}/extract_answer/answer", got, ex["answer"]))
        if bench == "egoschema" and "subset_answer" in exp:
            rows.append(compare_exact(f"{n}/subset_answer", sample.meta.get("answer"), exp["subset_answer"]))
    return rows


def _dump_rows(n: str, dump: dict[str, Any], clip: Any, px: torch.Tensor, root: Path) -> list[ParityRow]:
    """Raw frames (uint8, exact) and model-input slices (float32) of `expected/pixels.safetensors`."""
    from safetensors.torch import load_file

    tensors = load_file(str(root / dump["file"]))
    pos = dump["positions"]
    rows = [compare_exact(f"{n}/pixels/dump_frame_indices", [clip.indices[i] for i in pos], dump["frame_indices"]),
            compare_exact(f"{n}/pixels/dump_frames_uint8", clip.frames[pos], tensors[dump["key_uint8"]])]
    if dump.get("key_float32"):
        rows.append(compare_close(f"{n}/pixels/dump_pixel_values", px[:, dump["float_positions"]],
                                  tensors[dump["key_float32"]], PIXEL_VALUES_ATOL))
    return rows


# =========================================================================== per benchmark
def _check_benchmark(root: Path, manifest: dict[str, Any], bench: str, spec: dict[str, Any], toks: Any,
                     tok_paths: dict[str, str], dumps: dict[str, dict[str, Any]], rows: list[ParityRow]) -> None:
    task_cls = lookup("task", bench)
    summary = read_json(root / spec["run_summary"]) if spec.get("run_summary") else {}
    runs = spec.get("runs") or [{"name": bench, "args": {}}]
    cases_by_run: dict[str, list[dict[str, Any]]] = {}
    for c in spec.get("cases", []):
        run_name = c.get("run") or (c.get("task_type") if bench == "tempcompass" else None) or runs[0]["name"]
        cases_by_run.setdefault(run_name, []).append(c)
    run_summaries = {r.get("name"): r for r in summary.get("runs", [])}
    with tempfile.TemporaryDirectory(prefix=f"parity_{bench}_") as tmp:
        out_dir = Path(tmp)
        outputs: list[str] = list(spec.get("outputs") or [])
        for run in runs:
            rn = f"bench/{bench}/{run['name']}"
            cfg = _eval_config(root, manifest, bench, spec, run)
            task = task_cls(cfg)
            samples = task.build_samples()
            cases = cases_by_run.get(run["name"], [])
            by_id = {_case_key(bench, c): c for c in cases}
            ids = [s.id for s in samples]
            rows.append(compare_exact(f"{rn}/processing_order", [i for i in ids if i in by_id], list(by_id)))
            entries: list[dict[str, Any]] = []
            for s in samples:
                e: dict[str, Any] = {"id": s.id, "video": s.video, "prompt": s.prompt, "meta": s.meta}
                case = by_id.get(s.id)
                try:
                    clip = load_eval_clip(s.video, s.meta.get("loader"), cfg.num_frames, IMAGE_SIZE)
                except VideoDecodeError as exc:
                    e["error"], e["error_type"] = str(exc), exc.reason
                    if case is not None:
                        rows.append(ParityRow(f"bench/{bench}/{case['id']}/load", float("inf"), "exact", False, str(exc)[:200]))
                    entries.append(e)
                    continue
                if case is None:
                    rows.append(ParityRow(f"{rn}/{s.id}/unexpected_sample", float("inf"), "exact", False,
                                          "the product reads a sample the original did not process"))
                    e["answer"] = ""
                    entries.append(e)
                    continue
                exp = read_json(root / case["expected"])
                got: list[ParityRow] = []
                answer_box: list[str] = []

                def one(case=case, exp=exp, s=s, clip=clip, got=got, answer_box=answer_box) -> list[ParityRow]:
                    r, a = _case_rows(f"bench/{bench}/{case['id']}", bench, task, cfg, s, clip, exp, toks, tok_paths,
                                      dumps, root)
                    answer_box.append(a)
                    return r

                _guard(rows, f"bench/{bench}/{case['id']}", one)
                e["answer"] = answer_box[0] if answer_box else ""
                entries.append(e)
            rows.append(compare_exact(f"{rn}/cases_found", sorted(set(by_id) - set(ids)), []))
            result = task.evaluate(entries, out_dir)
            rows += _run_rows(rn, bench, samples, entries, result, summary, run_summaries.get(run["name"]), root)
            rs = run_summaries.get(run["name"]) or {}
            outputs += [o for o in rs.get("outputs", []) if o not in outputs]
        outputs += [o for o in summary.get("outputs", []) if o not in outputs]
        for rel in outputs:
            got_path = out_dir / Path(rel).name
            want = (root / rel).read_bytes()
            have = got_path.read_bytes() if got_path.is_file() else None
            rows.append(ParityRow(f"bench/{bench}/outputs/{Path(rel).name}", 0.0 if have == want else float("inf"),
                                  "bytes", have == want,
                                  f"{len(want)} bytes" if have == want else _byte_note(have, want)))


def _byte_note(have: bytes | None, want: bytes) -> str:
    if have is None:
        return "not written"
    k = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
    return f"first difference at byte {k}: got {have[k:k + 40]!r}, want {want[k:k + 40]!r}"


def _run_rows(rn: str, bench: str, samples: list, entries: list[dict[str, Any]], result: Any, summary: dict[str, Any],
              run_summary: dict[str, Any] | None, root: Path) -> list[ParityRow]:
    """Run-level facts: skipped samples, scores, random fallbacks."""
    rows: list[ParityRow] = []
    video_of = {s.id: Path(s.video).stem for s in samples}
    if bench == "mvbench":
        skipped = summary.get("skipped", [])
        rows.append(compare_exact(f"{rn}/skipped_count", sum(1 for e in entries if "error" in e), len(skipped)))
        if "processed" in summary:
            rows.append(compare_exact(f"{rn}/processed", result.counts["scored"], summary["processed"]))
        test = read_json(Path(result.files["test"]))
        final = read_json(Path(result.files["upload_leaderboard"]))
        rows += [compare_exact(f"{rn}/acc_dict", test["acc_dict"], summary["acc_dict"]),
                 compare_exact(f"{rn}/final_res", final, summary["final_res"])]
        if "mean_of_task_accuracies_for_comparison" in summary:
            rows.append(compare_exact(f"{rn}/mean_of_tasks", result.metrics.get("Mean of tasks"),
                                      summary["mean_of_task_accuracies_for_comparison"]))
    elif bench in ("egoschema", "videomme"):
        src = run_summary if run_summary is not None else summary
        draws = read_json(Path(result.files["fallbacks"]))["draws"]
        if "random_fallbacks_in_order" in src:
            rows.append(compare_exact(f"{rn}/random_fallbacks_in_order", [video_of[d["id"]] for d in draws],
                                      src["random_fallbacks_in_order"]))
        if "seed42_first_draws" in summary:
            ref = SeededFallback("ABCDE" if bench == "egoschema" else "ABCD", 42)
            got = [ref.draw(k) for k in range(len(summary["seed42_first_draws"]))]
            rows.append(compare_exact(f"{rn}/seed42_first_draws", got, summary["seed42_first_draws"]))
        if bench == "egoschema" and "accuracy" in src:
            rows.append(compare_exact(f"{rn}/accuracy", result.metrics.get("accuracy"), src["accuracy"]))
            if "printed_accuracy_line" in src:
                rows.append(compare_exact(f"{rn}/printed_accuracy_line",
                                          next((x for x in result.notes if x.startswith("Accuracy: ")), None),
                                          src["printed_accuracy_line"]))
        if "processed" in src:
            rows.append(compare_exact(f"{rn}/processed", sum(1 for e in entries if "error" not in e), src["processed"]))
    elif bench == "tempcompass" and "processed" in summary:
        pass  # processed counts all four runs together: compared by the caller's case rows
    return rows


# =========================================================================== extraction tables
def _extraction_rows(bench: str, table: dict[str, Any], llama: Any) -> list[ParityRow]:
    rows: list[ParityRow] = []
    n = f"bench/extraction/{bench}"
    got_rows, want_rows = [], []
    for r in table.get("rows", []):
        text = postprocess_answer(r["fake_generated_ids"], llama) if "fake_generated_ids" in r else r["chat_answer_text"]
        want: dict[str, Any] = {}
        got: dict[str, Any] = {}
        if "chat_answer_text" in r:
            got["chat_answer_text"], want["chat_answer_text"] = text, r["chat_answer_text"]
        if bench == "mvbench":
            pred = mvbench_first_line(text)
            got["pred"], want["pred"] = pred, r["pred"]
            got["check_ans"] = {gt: mvbench_check_ans(pred, gt) for gt in r["check_ans"]}
            want["check_ans"] = r["check_ans"]
        elif bench == "tempcompass":
            got["stored_prediction"], want["stored_prediction"] = text, r["stored_prediction"]
        else:
            value = egoschema_extract(text) if bench == "egoschema" else videomme_extract(text)
            got["random_fallback"], want["random_fallback"] = value is None, r["random_fallback"]
            got["answer"], want["answer"] = value, r["answer"]  # null in the table for fallbacks
        got_rows.append(got)
        want_rows.append(want)
    for k, (g, w) in enumerate(zip(got_rows, want_rows)):
        rows.append(compare_exact(f"{n}/row{k:02d}", g, w))
    rows.append(compare_exact(f"{n}/rows", len(got_rows), len(table.get("rows", []))))
    return rows


# =========================================================================== entry point
def check_reference_benchmarks(fixture_dir: str | Path) -> list[ParityRow]:
    """Compare every recorded value of a reference_benchmarks-layout folder.

    Args:
        fixture_dir: folder with ``manifest.json`` (paths in it are relative to this folder).

    Returns:
        one `ParityRow` per compared quantity (integers, strings and files exact; pixels within the
        manifest's tolerances).
    """
    root = Path(fixture_dir)
    manifest = read_json(root / "manifest.json")
    toks = _Tokenizers(root)
    tok_paths = {"llama": manifest["tokenizers"]["llama"], "bert": manifest["tokenizers"]["bert"]}
    pixels = manifest.get("pixels", {})
    dumps = {d["sample"]: {**d, "file": pixels["file"]} for d in pixels.get("entries", [])}
    rows: list[ParityRow] = []
    seen_dumps: set[str] = set()
    for bench, spec in manifest["benchmarks"].items():
        seen_dumps |= {c["id"] for c in spec.get("cases", [])} & set(dumps)

        def one(bench=bench, spec=spec) -> list[ParityRow]:
            out: list[ParityRow] = []
            _check_benchmark(root, manifest, bench, spec, toks, tok_paths, dumps, out)
            return out

        _guard(rows, f"bench/{bench}", one)
    rows.append(compare_exact("bench/pixels/dumps_matched_to_cases", sorted(seen_dumps), sorted(dumps)))
    llama = toks.llama(tok_paths["llama"])
    for bench, rel in manifest.get("extraction", {}).items():
        _guard(rows, f"bench/extraction/{bench}",
               lambda bench=bench, rel=rel: _extraction_rows(bench, read_json(root / rel), llama))
    return rows


__all__ = ["check_reference_benchmarks"]
