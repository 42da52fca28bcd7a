"""Preflight (timechat.check): every missing path and misfit setting at once, before anything is built;
one message per failed run (rank 0 only, no traceback unless asked); the scripts find the project's python."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from timechat.check import PreflightError, check_config, preflight, report_failure
from timechat.config import load_config

REPO = Path(__file__).resolve().parents[1]
STAGE2 = REPO / "train_configs" / "stage2_finetune_time104k_valley72k.yaml"
TINY_EVAL = REPO / "eval_configs" / "tiny_synthetic.yaml"
TVG_CHARADES = REPO / "eval_configs" / "timechat_tvg_charades.yaml"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMECHAT_")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return env


@pytest.fixture(scope="module")
def data_root(synthetic_test_split) -> Path:
    return synthetic_test_split


def _tiny(data_root: Path, tmp_path: Path, **extra) -> list[str]:
    values = {"paths.data_root": data_root, "paths.output_root": tmp_path, "output_dir": tmp_path / "eval",
              "eval.checkpoint": "null", "eval.num_frames": 4, **extra}
    return [f"{k}={v}" for k, v in values.items()]


def _keys(problems) -> list[str]:
    return [p.key for p in problems if p.fatal]


def test_train_names_every_missing_path_at_once_without_traceback(tmp_path):
    """The acceptance run: the paper's training config on a machine without checkpoints or data."""
    ckpt, data = tmp_path / "ckpt", tmp_path / "data"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--cfg-path", str(STAGE2),
                           f"paths.ckpt_root={ckpt}", f"paths.data_root={data}", f"paths.output_root={tmp_path / 'out'}"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr
    assert "Traceback" not in err and "Traceback" not in proc.stdout
    assert elapsed < 120  # seconds on an idle machine (imports only); generous for a loaded CI
    for key, path in (("model.files.vit", ckpt / "eva-vit-g/eva_vit_g.pth"),
                      ("model.files.qformer", ckpt / "instruct-blip/instruct_blip_vicuna7b_trimmed.pth"),
                      ("model.files.llama", ckpt / "Video-LLaMA-2-7B-Finetuned/llama-2-7b-chat-hf"),
                      ("model.files.bert_tokenizer", ckpt / "bert-base-uncased"),
                      ("model.files.ckpt", ckpt / "Video-LLaMA-2-7B-Finetuned/VL_LLaMA_2_7B_Finetuned.pth"),
                      ("datasets.time_instruct.records", data / "TimeIT/data/time/instruct_time-sensitive_104k_asr.json"),
                      ("datasets.valley72k_instruct.records", data / "TimeIT/data/valley/instruct_valley_72k.json")):
        line = next((ln for ln in err.splitlines() if ln.strip().startswith(key + " ")), None)
        assert line is not None, (key, err)
        assert str(path) in line, (key, line)  # the resolved absolute path
    assert f"paths.ckpt_root={ckpt}" in err and "TIMECHAT_CKPT_ROOT" in err
    assert f"paths.data_root={data}" in err and "TIMECHAT_DATA_ROOT" in err
    assert 'README "Checkpoints layout (real recipe)"' in err and 'README "Data layout (real recipe)"' in err
    assert err.splitlines()[0] == f"preflight of {STAGE2}: 9 problem(s) - nothing was built"
    assert not (tmp_path / "out").exists()  # nothing was built or written


def test_eval_checkpoint_config_lists_model_files_and_data(tmp_path):
    cfg = load_config(TVG_CHARADES, [f"paths.ckpt_root={tmp_path}/ckpt", f"paths.data_root={tmp_path}/data"])
    problems, _ = check_config(cfg, "eval")
    assert _keys(problems) == ["model.files.vit", "model.files.qformer", "model.files.llama", "model.files.ckpt",
                               "model.bert_tokenizer", "eval.anno_path", "eval.videos_dir"]
    assert all(p.path.startswith(str(tmp_path)) for p in problems)


def test_tiny_eval_with_data_passes(data_root, tmp_path):
    problems, notes = check_config(load_config(TINY_EVAL, _tiny(data_root, tmp_path)), "eval")
    assert problems == []
    assert any("eval.videos_dir: 3 of 3 sampled videos present (3 videos annotated)" in n for n in notes)


def test_dvc_with_tvg_template_and_too_many_frames_refused_before_the_model(data_root, tmp_path):
    """The eval config's own hint, taken literally, and a frame count above the tiny model's 32 rows."""
    dvc = data_root / "synthetic/annotations/test.caption_coco_format.json"
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, str(REPO / "evaluate.py"), "--cfg-path", str(TINY_EVAL),
                           *_tiny(data_root, tmp_path, **{"eval.task": "dvc", "eval.anno_path": dvc,
                                                          "eval.num_frames": 96})],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    frames = next(ln for ln in lines if ln.strip().startswith("eval.num_frames "))
    assert "96 frames" in frames and "32 rows" in frames and "max_frame_pos" in frames
    prompt = next(ln for ln in lines if ln.strip().startswith("eval.prompt_template "))
    assert "eval.task=dvc" in prompt and "{query}" in prompt
    assert not (out / "config.yaml").exists() and not (out / "eval.log").exists()  # nothing built


def test_task_vs_annotation_format(data_root, tmp_path):
    tvg_file = data_root / "synthetic/annotations/tvg_test.caption_coco_format.json"
    dvc_file = data_root / "synthetic/annotations/test.caption_coco_format.json"
    cfg = load_config(TINY_EVAL, _tiny(data_root, tmp_path, **{"eval.task": "dvc", "eval.anno_path": tvg_file,
                                                                "eval.prompt_template": "null",
                                                                "eval.prompt": "dvc_description"}))
    with pytest.raises(PreflightError) as err:
        preflight(cfg, "eval")
    assert [p.key for p in err.value.problems] == ["eval.anno_path"]
    assert "looks like a TVG annotation" in str(err.value) and "eval.task=dvc" in str(err.value)
    cfg = load_config(TINY_EVAL, _tiny(data_root, tmp_path, **{"eval.anno_path": dvc_file}))
    problems, _ = check_config(cfg, "eval")
    assert _keys(problems) == ["eval.anno_path"] and "looks like a DVC annotation" in problems[0].message


def test_prompt_checks(data_root, tmp_path):
    # A DVC prompt name for a TVG run, and the one-{} template that drops the query.
    problems, _ = check_config(load_config(TINY_EVAL, _tiny(data_root, tmp_path, **{
        "eval.prompt_template": "null", "eval.prompt": "dvc_description"})), "eval")
    assert _keys(problems) == ["eval.prompt"] and "is a dvc prompt" in problems[0].message
    problems, _ = check_config(load_config(TINY_EVAL, _tiny(data_root, tmp_path, **{
        "eval.prompt_template": "null", "eval.prompt": "tvg_description"})), "eval")
    assert _keys(problems) == ["eval.prompt"] and "drop the query" in problems[0].message
    problems, _ = check_config(load_config(TINY_EVAL, _tiny(data_root, tmp_path, **{
        "eval.prompt_template": "null", "eval.prompt": str(tmp_path / "nope.txt")})), "eval")
    assert _keys(problems) == ["eval.prompt"] and problems[0].path == str(tmp_path / "nope.txt")


def test_missing_videos_sampled_with_the_count(data_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    videos = sorted((root / "synthetic/videos/test").glob("*.mp4"))
    videos[0].unlink()
    problems, _ = check_config(load_config(TINY_EVAL, _tiny(root, tmp_path)), "eval")
    assert len(problems) == 1 and not problems[0].fatal  # some missing: a warning, counted in the report
    assert problems[0].key == "eval.videos_dir" and "2 of 3 sampled videos present" in problems[0].message
    for v in videos[1:]:
        v.unlink()
    problems, _ = check_config(load_config(TINY_EVAL, _tiny(root, tmp_path)), "eval")
    assert _keys(problems) == ["eval.videos_dir"] and "0 of 3" in problems[0].message


def test_checkpoint_latest_without_a_run(data_root, tmp_path):
    problems, _ = check_config(load_config(TINY_EVAL, _tiny(data_root, tmp_path, **{"eval.checkpoint": "latest"})),
                               "eval")
    assert _keys(problems) == ["eval.checkpoint"] and "no complete step folder" in problems[0].message
    assert "python train.py" in problems[0].expected


def test_train_tiny_config_passes_before_the_data_is_generated(tmp_path):
    """run.synthetic_data makes the records and run.build_feature_cache the features: not missing."""
    cfg = load_config(REPO / "train_configs" / "tiny_synthetic.yaml",
                      [f"paths.data_root={tmp_path}/data", f"paths.output_root={tmp_path}/out"])
    problems, notes = check_config(cfg, "train")
    assert problems == []
    assert sum("generated by run.synthetic_data" in n for n in notes) == 3
    cfg = load_config(REPO / "train_configs" / "tiny_synthetic.yaml",
                      [f"paths.data_root={tmp_path}/data", "run.synthetic_data=null", "datasets.synthetic_tvg.num_frames=64"])
    keys = _keys(check_config(cfg, "train")[0])
    assert keys[0] == "datasets.synthetic_tvg.num_frames"
    assert {"datasets.synthetic_tvg.records", "datasets.synthetic_dvc.records", "datasets.synthetic_timeline.records"} <= set(keys)


def test_check_cli(data_root, tmp_path, capsys):
    from timechat.check import main

    assert main(["--cfg-path", str(TINY_EVAL), *_tiny(data_root, tmp_path)]) == 0
    assert "everything the eval config names is there" in capsys.readouterr().out
    assert main(["--cfg-path", str(TINY_EVAL), *_tiny(data_root, tmp_path, **{"eval.num_frames": 33})]) == 2
    assert "eval.num_frames" in capsys.readouterr().err
    assert main(["--cfg-path", str(TINY_EVAL), "eval.nonsense=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key eval.nonsense" in err  # one line naming the key


def test_report_failure_rank0_only_traceback_on_request():
    def raised(exc):
        try:
            raise exc
        except Exception as e:  # noqa: BLE001
            return e

    exc = raised(FileNotFoundError("eval.anno_path not found: /x"))
    for rank, debug, expect_text, expect_tb in ((0, False, True, False), (1, False, False, False), (0, True, True, True)):
        out = io.StringIO()
        status = report_failure(exc, rank=rank, debug=debug, stream=out)
        text = out.getvalue()
        assert status == 1
        assert ("eval.anno_path not found: /x" in text) == expect_text, (rank, debug, text)
        assert ("Traceback" in text) == expect_tb, (rank, debug, text)
    out = io.StringIO()
    assert report_failure(raised(KeyError("invalid eval section: unknown key eval.x")), rank=0, debug=False, stream=out) == 2
    assert out.getvalue() == "error: invalid eval section: unknown key eval.x (traceback: rerun with --debug or TIMECHAT_DEBUG=1)\n"
    # An unexpected crash on one rank is still said, by that rank, in one line.
    out = io.StringIO()
    report_failure(raised(RuntimeError("CUDA out of memory")), rank=3, debug=False, stream=out)
    assert out.getvalue().startswith("[rank 3] error (RuntimeError): CUDA out of memory")


@pytest.mark.slow  # torchrun with 2 processes (~20 s); CI runs it
def test_torchrun_one_message_from_rank0(data_root, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(REPO / "evaluate.py"), "--cfg-path", str(TINY_EVAL),
                           *_tiny(data_root, tmp_path, **{"eval.num_frames": 96})],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.count("preflight of ") == 1 and proc.stderr.count("eval.num_frames ") == 1


@pytest.mark.slow  # a shell script + python subprocess (~11 s); CI runs it
def test_eval_script_finds_the_project_venv_without_an_activated_one(tmp_path):
    """`bash scripts/eval_tvg.sh` with a PATH that has no venv: the project's .venv python runs the
    preflight (missing checkpoints listed), not `No module named torch`."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("eval_common.sh", "eval_tvg.sh"):
        shutil.copy(REPO / "scripts" / name, repo / "scripts" / name)
    shutil.copytree(REPO / "eval_configs", repo / "eval_configs")
    venv_python = repo / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    venv_python.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", str(repo / "scripts" / "eval_tvg.sh"), f"paths.ckpt_root={tmp_path}/ckpt",
                           f"paths.data_root={tmp_path}/data"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"using the project's .venv python: {venv_python}" in proc.stderr
    assert "No module named" not in proc.stderr and "Traceback" not in proc.stderr
    assert "model.files.vit" in proc.stderr and "eval.anno_path" in proc.stderr
    assert "torch.distributed" not in proc.stderr  # torchrun never started
