"""Evaluation chain on CPU with the tiny random model and generated synthetic videos.

One module-scoped single-process TVG run (with a corrupt video added) is the reference; the other
tests compare against it: a 2-process torchrun through scripts/eval_tvg.sh, a killed-then-resumed
run, and batch size 1 vs batched greedy decoding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from timechat.config import load_config
from timechat.eval.inference import KILL_ENV, MERGED_FILE, read_jsonl_lines, rank_batches
from timechat.eval.tasks.grounding import extract_time

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / "eval_configs" / "tiny_synthetic.yaml"
CORRUPT_ID = "9999"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Synthetic test split (3 short 32-px videos) plus one corrupt video with its own query."""
    from timechat.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("evaldata")
    generate_synthetic_dataset(root / "synthetic", num_train=0, num_val=0, num_test=3, duration=(4.0, 6.0),
                               fps=4.0, size=32, max_events=2, min_event_duration=2.0)
    videos = root / "synthetic" / "videos" / "test"
    (videos / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    ann_path = root / "synthetic" / "annotations" / "tvg_test.caption_coco_format.json"
    ann = json.loads(ann_path.read_text())
    ann["annotations"].insert(1, {"image_id": "corrupt.mp4", "caption": "a red square appears", "timestamp": [1.0, 2.0],
                                  "id": int(CORRUPT_ID)})
    ann_path.write_text(json.dumps(ann))
    return root


def overrides(data_root: Path, out: Path, **extra) -> list[str]:
    values = {"paths.data_root": data_root, "paths.output_root": out.parent, "output_dir": out,
              "eval.checkpoint": "null", "eval.num_frames": 4, "eval.max_new_tokens": 8, "eval.batch_size": 2,
              "eval.num_workers": 0, "eval.plot_samples": 4, **extra}
    return [f"{k}={v}" for k, v in values.items()]


def run_in_process(data_root: Path, out: Path, **extra) -> dict:
    from timechat.eval.run import run_evaluation

    return run_evaluation(load_config(CFG, overrides(data_root, out, **extra)))


def merged(out: Path) -> list[dict]:
    return json.loads((out / MERGED_FILE).read_text())


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ref") / "tvg"
    return out, run_in_process(data_root, out)


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_every_sample_once_and_corrupt_video_recorded(reference, data_root):
    out, report = reference
    gt = json.loads((data_root / "synthetic/annotations/tvg_test.caption_coco_format.json").read_text())
    ids = [str(a["id"]) for a in gt["annotations"]]
    entries = merged(out)
    assert [e["id"] for e in entries] == ids  # every sample once, in annotation order
    bad = [e for e in entries if "error" in e]
    assert [e["id"] for e in bad] == [CORRUPT_ID]
    assert "corrupt.mp4" in bad[0]["error"] and bad[0]["error_type"] in ("undecodable", "empty")
    assert all("answer" in e and "timing" not in e for e in entries if e["id"] != CORRUPT_ID)
    assert report["counts"] == {"samples": len(ids), "answered": len(ids) - 1, "decode_failures": 1,
                                "parse_failures": report["counts"]["parse_failures"], "invalid_predictions": 0}
    assert report["decode_failures"]["examples"][0]["id"] == CORRUPT_ID
    # The original prediction format: query id -> {"timestamp": [[s, e]] or [], "query", "vid"};
    # the corrupt video is an empty prediction (a miss) that stays in the R1 denominator.
    fmt = json.loads(Path(report["files"]["predictions"]).read_text())
    assert set(fmt) == set(ids) and fmt[CORRUPT_ID]["timestamp"] == []
    assert set(report["metrics"]) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}


def test_parse_failures_counted_in_report(reference):
    out, report = reference
    answered = [e for e in merged(out) if "answer" in e]
    expected = sum(not extract_time(e["answer"]).ok for e in answered)
    pf = report["parse_failures"]
    assert pf["per_task"]["tvg"]["count"] == len(answered)
    assert pf["per_task"]["tvg"]["unparseable"] == expected == report["counts"]["parse_failures"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["parse_failures"]["total"] == expected
    md = (out / "report.md").read_text()
    assert f"{expected} of {len(answered)} answers unparseable" in md
    assert "## Decode failures" in md and "1 video(s) could not be decoded" in md


def test_report_files_and_plots(reference):
    out, report = reference
    for name in ("report.json", "report.md", "timeline.png", "config.yaml", "results_rank0.jsonl"):
        assert (out / name).is_file(), name
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["files"]["timeline_plot"].endswith("timeline.png")
    assert report["config"]["eval"]["task"] == "tvg"
    assert report["checkpoints"] == []  # eval.checkpoint=null and no model files: random init
    assert report["timing"]["world_size"] == 1 and report["timing"]["inference_s"] > 0


@pytest.mark.slow  # torchrun with 2 gloo processes (~15 s); CI runs it
def test_two_processes_match_single_process(reference, data_root, tmp_path):
    """torchrun with 2 CPU processes (through scripts/eval_tvg.sh) gives the single-process file."""
    ref_out, _ = reference
    out = tmp_path / "tvg2"
    env = _subprocess_env() | {"NPROC": "2", "CFG": str(CFG), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "eval_tvg.sh"), *overrides(data_root, out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"report: {out}/report.md" in proc.stdout
    entries = merged(out)
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    assert entries == merged(ref_out)  # same answers regardless of world size
    # Global batch b went to rank b % 2; each rank wrote exactly its own samples.
    n = len(entries)
    for rank in (0, 1):
        lines = read_jsonl_lines(out / f"results_rank{rank}.jsonl")
        expect = [entries[i]["id"] for _, idx in rank_batches(n, 2, rank, 2) for i in idx]
        assert [e["id"] for e in lines] == expect


def test_killed_then_resumed_equals_uninterrupted(reference, data_root, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "tvg_resume"
    env = _subprocess_env() | {KILL_ENV: "3"}
    proc = subprocess.run([sys.executable, "evaluate.py", "--cfg-path", str(CFG), *overrides(data_root, out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 17, proc.stderr[-3000:]
    assert not (out / MERGED_FILE).exists()
    before = read_jsonl_lines(out / "results_rank0.jsonl")
    assert len(before) == 3  # written lines survive the kill
    report = run_in_process(data_root, out)
    answered_before = sum("answer" in e for e in before)
    assert report["inference"]["resumed"] == answered_before  # decode errors are retried on resume
    assert merged(out) == merged(ref_out)
    # No answered sample is run twice: each answered id is in the rank file exactly once.
    ids = [e["id"] for e in read_jsonl_lines(out / "results_rank0.jsonl") if "answer" in e]
    assert sorted(ids) == sorted(e["id"] for e in merged(ref_out) if "answer" in e)


def test_resume_refuses_other_settings(reference, data_root):
    out, _ = reference
    with pytest.raises(ValueError, match="other settings"):
        run_in_process(data_root, out, **{"eval.max_new_tokens": 5})


def test_batched_greedy_equals_batch_size_one(reference, data_root, tmp_path):
    ref_out, _ = reference  # batch size 2
    report = run_in_process(data_root, tmp_path / "bs1", **{"eval.batch_size": 1})
    assert report["counts"]["decode_failures"] == 1
    one = {e["id"]: e.get("answer") for e in merged(tmp_path / "bs1")}
    two = {e["id"]: e.get("answer") for e in merged(ref_out)}
    assert one == two
    four = run_in_process(data_root, tmp_path / "bs4", **{"eval.batch_size": 4, "eval.num_workers": 1})
    assert four["counts"] == report["counts"]
    assert {e["id"]: e.get("answer") for e in merged(tmp_path / "bs4")} == one


def test_post_check_round(data_root, tmp_path):
    """A post-check prompt gives a second answer in the same conversation; the last one is scored."""
    out = tmp_path / "pc"
    run_in_process(data_root, out, **{"eval.post_check_prompt": "tvg_post_check", "eval.max_samples": 2,
                                      "eval.max_new_tokens": 4})
    entries = merged(out)
    assert len(entries) == 2
    ok = [e for e in entries if "answer" in e]
    assert ok and all(len(e["answers"]) == 2 and e["answer"] == e["answers"][1] for e in ok)
    assert all(e["post_check_prompt"].startswith("Be careful about your output format") for e in entries)


def test_batched_logits_match_single(data_root, monkeypatch):
    """Step logits of a left-padded batch equal those of each sample alone (and differ across videos)."""
    import torch

    from timechat.config import eval_config, resolve_config
    from timechat.eval import inference as inf
    from timechat.eval.run import build_eval_model
    from timechat.eval.tasks.grounding import GroundingTask

    cfg = load_config(CFG, overrides(data_root, data_root / "unused"))
    ecfg = eval_config(cfg)
    model, toks, _, _ = build_eval_model(resolve_config(cfg), ecfg, torch.device("cpu"))
    samples = [s for s in GroundingTask(ecfg).build_samples() if s.id != CORRUPT_ID]
    items = [inf.VideoItems(samples, ecfg.num_frames, model.cfg.vision.image_size)[i] for i in range(len(samples))]
    recorded = []
    real_generate = inf.generate

    def keep_scores(*args, **kwargs):
        out = real_generate(*args, keep_scores=True, **kwargs)
        recorded.append(torch.stack(out.scores, dim=1))  # (B, steps, V)
        return out

    monkeypatch.setattr(inf, "generate", keep_scores)
    engine = inf.InferenceEngine(model, toks, ecfg, data_root / "unused", rank=0, world_size=1)
    batched = engine.answer_batch(samples, items)
    batch_scores = recorded.pop()
    assert batch_scores.shape[0] == len(samples)
    for k, item in enumerate(items):
        single = engine.answer_batch(samples, [item])
        scores = recorded.pop()[0]
        assert single[0]["answer"] == batched[k]["answer"]
        steps = min(scores.shape[0], batch_scores.shape[1])
        torch.testing.assert_close(batch_scores[k, :steps], scores[:steps], atol=1e-4, rtol=1e-4)
    first = batch_scores[:, 0]
    assert not torch.allclose(first[0], first[1], atol=1e-5)  # samples (video + query) differ
