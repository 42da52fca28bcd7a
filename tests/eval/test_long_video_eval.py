"""A 10-minute synthetic video evaluated at 1 fps (600 frames) by the tiny model on CPU (issue 17).

The full chain of `evaluate.py` (config, decoding, frame budget, chunked encoding, the nearest
position rule, the context check, decoding, the task's scoring) with the frame times of the prompt
and the visual token count checked on what reached the LLM.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from timechat.config import load_config

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / "eval_configs" / "tiny_synthetic.yaml"


@pytest.mark.slow
def test_ten_minute_video_at_one_fps(tmp_path, monkeypatch):
    from timechat.data.synthetic import generate_synthetic_dataset
    from timechat.eval import inference as inf
    from timechat.eval.run import run_evaluation

    root = tmp_path / "data"
    generate_synthetic_dataset(root / "synthetic", num_train=0, num_val=0, num_test=1, duration=(600.0, 600.0),
                               fps=2.0, size=32, max_events=2, min_event_duration=2.0)
    seen: list[tuple[str, int]] = []
    real_round = inf.InferenceEngine.answer_round

    def record(self, states, video, gen_cfg, on_token=None, names=None):
        done = real_round(self, states, video, gen_cfg, on_token, names)
        seen.extend((p, v.shape[0]) for p, v in zip(done.prompts, video))
        return done

    monkeypatch.setattr(inf.InferenceEngine, "answer_round", record)
    out = tmp_path / "out"
    values = {"paths.data_root": root, "paths.output_root": tmp_path, "output_dir": out, "eval.checkpoint": "null",
              "eval.fps": 1.0, "eval.max_frames": 600, "eval.max_new_tokens": 4, "eval.batch_size": 1,
              "eval.num_workers": 0, "eval.plots": False, "eval.max_context": 20000,
              "model.config.position_overflow": "nearest", "model.config.frame_chunk_size": 64}
    run_evaluation(load_config(CFG, [f"{k}={v}" for k, v in values.items()]))

    entries = json.loads((out / inf.MERGED_FILE).read_text())
    assert len(entries) >= 1 and all("error" not in e for e in entries)
    assert {e["num_frames"] for e in entries} == {600}
    prompt, n_video = seen[0]
    times = re.search(r"The video contains (\d+) frames sampled at ([0-9., ]+) seconds\.", prompt)
    assert times and times.group(1) == "600"
    assert times.group(2).split(", ") == [f"{k}.0" for k in range(600)]  # frame k at k seconds
    assert n_video == 4 * math.ceil(600 / 4)  # num_video_query_token * ceil(T / stride) of the tiny model
