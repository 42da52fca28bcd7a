"""Chat sessions and `python -m timechat.chat`.

* Prompt equality: a session's prompts, prompt segment ids, video context length, timestamp ids and
  post-processed answers equal the original ``Chat``'s on the data fixtures' inference cases
  (reference_data manifest ``inference``, one session per video, every round) and on the
  reference_model golden generation. The model there is a stand-in that encodes nothing and a fake
  `generate` returns the fixtures' generated ids, so only the session's own assembly is tested.
* Streaming, multi-turn and reset on the tiny random model: the streamed text ends equal to the
  non-streamed answer, token ids equal evaluation's `InferenceEngine` for the same sample.
* The CLI through ``main(argv)`` and a subprocess, on a tiny model written to a temp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from timechat.config import EvalConfig
from timechat.chat import ChatSession, Span, answer_spans, main, task_question, task_templates
from timechat.models.generation import GenerationOutput

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "eval_configs" / "tiny_synthetic.yaml"


# --------------------------------------------------------------------------------------------
# Helpers (also used by test_demo_browser.py)
# --------------------------------------------------------------------------------------------


def synthetic_videos(root: Path) -> Path:
    """Two short 32-px synthetic test videos (with their annotations) under `root/synthetic`."""
    from timechat.data.synthetic import generate_synthetic_dataset

    generate_synthetic_dataset(root / "synthetic", num_train=0, num_val=0, num_test=2, duration=(6.0, 8.0), fps=4.0,
                               size=32, max_events=2, min_event_duration=2.0)
    return root / "synthetic" / "videos" / "test"


def tiny_overrides(**extra) -> list[str]:
    """Shrink eval_configs/tiny_synthetic.yaml to seconds (8 frames, short answers)."""
    values = {"eval.num_frames": 8, "eval.max_new_tokens": 12, "eval.num_workers": 0, **extra}
    return [f"{k}={v}" for k, v in values.items()]


def write_tiny_model(out: Path, teach: tuple[str, str, str] | None = None, steps: int = 60) -> Path:
    """A tiny random TimeChat saved as a training step folder (trainable weights + config.yaml).

    Args:
        teach: optional (video, question, answer): fit the model to answer exactly that (a few
            dozen Adam steps on the session's own context), so a test sees a known answer.
    Returns:
        The step folder (pass it as ``eval.checkpoint``).
    """
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from timechat.checkpoint import trainable_state_dict
    from timechat.chat import load_session
    from timechat.config import load_config, resolve_config

    overrides = tiny_overrides(**{"eval.checkpoint": "null"})
    session = load_session(str(CFG), overrides, device="cpu")
    if teach is not None:
        _teach(session, *teach, steps=steps)
    out.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state_dict(session.engine.model), str(out / "trainable.safetensors"))
    model_section = resolve_config(load_config(CFG, overrides))["model"]
    (out / "config.yaml").write_text(OmegaConf.to_yaml({"model": model_section}))
    return out


def _teach(session: ChatSession, video: str, question: str, answer: str, steps: int) -> None:
    """Fit the whole tiny model (teacher forcing) to give `answer` to `question` on `video`."""
    from timechat.data.conversation import ChatState, segment_ids
    from timechat.eval.inference import decode_video

    model, tok = session.engine.model, session.tokenizer
    _, item = decode_video(video, session.cfg.num_frames, model.cfg.vision.image_size)
    state = ChatState(system=session.engine.system)
    state.upload_video(item["msg"])
    state.ask(question)
    segs = segment_ids(state.prompt_for_answer(), tok)
    target = torch.tensor(tok.encode(answer, add_special_tokens=False) + [2])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(steps):
        video_tokens = session.engine.encode_videos([item])
        ctx, _ = model.build_context_embeds([segs], video_tokens)  # (1, L, D)
        emb = model.embed_tokens(target[None])  # (1, A, D)
        logits = model.llama_model(inputs_embeds=torch.cat([ctx, emb], 1)).logits[0, ctx.shape[1] - 1:-1]
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


# --------------------------------------------------------------------------------------------
# Prompt equality with the original Chat (fixtures)
# --------------------------------------------------------------------------------------------


class StandInModel:
    """Enough of `TimeChat` for prompt assembly: zero video tokens, a real embedding table.

    Records the timestamp ids it is given; `build_context_embeds` is the model's own.
    """

    from timechat.models.timechat import TimeChat as _TimeChat

    build_context_embeds = _TimeChat.build_context_embeds

    def __init__(self, vocab: int, num_query_token: int, stride: int, image_size: int = 32) -> None:
        self.cfg = SimpleNamespace(vision=SimpleNamespace(image_size=image_size))
        self.emb = torch.nn.Embedding(vocab, 4)
        self.base_llm = SimpleNamespace(get_input_embeddings=lambda: self.emb)
        self.llama_model = None
        self.nq, self.stride = num_query_token, stride
        self.timestamps: list[dict[str, torch.Tensor]] = []

    def encode_batch_videos(self, batch):
        from timechat.data.conversation import num_video_tokens

        images = batch["images"]  # (B, C, T, H, W): one video per session
        self.timestamps.append(batch["timestamps"])
        return [torch.zeros(num_video_tokens(images.shape[2], self.nq, self.stride), 4) for _ in range(images.shape[0])]


@pytest.fixture
def scripted_generate(monkeypatch):
    """Replace `generate` by one that returns queued rows (streaming them) and records the context."""
    calls: list[dict] = []
    queue: list[list[int]] = []

    def fake(llm, inputs_embeds, attention_mask, cfg, *, on_token=None, **_):
        row = queue.pop(0)
        calls.append({"context_length": int(attention_mask[0].sum()), "cfg": cfg})
        for t in row:
            if on_token is not None:
                on_token(torch.tensor([t]))
        return GenerationOutput(torch.tensor([row]))

    monkeypatch.setattr("timechat.eval.inference.generate", fake)
    return SimpleNamespace(calls=calls, queue=queue)


def _session(root: Path, llama_dir: Path, bert_dir: Path, n_frms: int, nq: int, stride: int) -> ChatSession:
    from timechat.data.tokenization import LlamaTokenizer, load_bert_tokenizer
    from timechat.factory import Tokenizers

    toks = Tokenizers(LlamaTokenizer.from_pretrained(str(llama_dir)), load_bert_tokenizer(str(bert_dir)))
    model = StandInModel(len(toks.llama), nq, stride)
    cfg = EvalConfig(num_frames=n_frms, system="evaluate", timestamp_tokenizer="bert", precision="fp32")
    return ChatSession(model, toks, cfg)


def _unpadded(ids: torch.Tensor | list, mask: torch.Tensor | list) -> list[list[int]]:
    return [[i for i, m in zip(r, mr) if m] for r, mr in zip(torch.as_tensor(ids).tolist(), torch.as_tensor(mask).tolist())]


def _inference_cases(reference_data_dir: Path) -> list[dict]:
    return json.loads((reference_data_dir / "manifest.json").read_text())["inference"]


def test_prompts_equal_original_chat_on_reference_data_inference_cases(reference_data_dir, scripted_generate):
    root = reference_data_dir
    consts = json.loads((root / "manifest.json").read_text())["constants"]
    cases = _inference_cases(root)
    assert cases, "the fixture manifest lists no inference case"
    checked = 0
    for case in cases:
        exp = json.loads((root / case["expected"]).read_text())
        n_frms = int(case.get("n_frms", exp.get("n_frms")))
        for b, video in enumerate(case["videos"]):
            session = _session(root, root / case["tokenizers"]["llama"], root / case["tokenizers"]["bert"], n_frms,
                               consts["num_video_query_token"], consts["stride"])
            session.load_video(root / video)
            want_msg = exp["msgs"][b]
            assert session.video.msg == (want_msg["msg"] if isinstance(want_msg, dict) else want_msg)
            # the timestamp ids the session encodes are the original's rows of this video (padding aside)
            ts = session.engine.model.timestamps[0]
            calls = exp["timestamps_bert"]["calls"]
            if exp["timestamps_bert"]["path"] == "batched":
                t = len(exp["timestamp_sentences"][b])
                call = {k: calls[0][k][b * t:(b + 1) * t] for k in ("input_ids", "attention_mask")}
            else:
                call = calls[b]
            assert _unpadded(ts["input_ids"], ts["attention_mask"]) == _unpadded(call["input_ids"], call["attention_mask"])
            for r, rnd in enumerate(exp["rounds"]):
                per = rnd["per_sample"][b]
                scripted_generate.queue.append(rnd["fake_generated_ids"][b])
                answer = session.ask(rnd["user_prompts"][b])
                got = session.last_round
                where = f"{case['id']} video {b} round {rnd['round']}"
                assert got.prompts[0] == per["prompt"], where
                assert got.segment_ids[0] == per["segment_ids"], where
                assert scripted_generate.calls[-1]["context_length"] == per["context_length"], where
                assert answer == rnd["answer_texts"][b], where
                checked += 1
    assert checked >= 2 * len(cases)


def test_prompt_equals_original_chat_on_reference_model_golden(reference_model_dir, scripted_generate):
    from timechat.reference.data import _find_dir

    root = reference_model_dir
    manifest = json.loads((root / "manifest.json").read_text())
    gen = json.loads((root / "golden/generation.json").read_text())
    sampling = json.loads((root / "inputs/sampling.json").read_text())
    model_m = manifest["model"]
    for s in gen["samples"]:
        session = _session(root, _find_dir(root, manifest, "tokenizer.model"), _find_dir(root, manifest, "vocab.txt"),
                           int(sampling.get("n_frms", model_m["n_frms"])), model_m["video_qformer"]["num_query_token"],
                           model_m["stride"])
        session.load_video(root / sampling["video"])
        ts = session.engine.model.timestamps[0]
        assert ts["input_ids"].tolist() == gen["timestamps_input_ids"]  # one video: same padding as the original
        scripted_generate.queue.append(s["generated_ids"])
        streamed = list(session.stream(s["user_prompt"]))
        assert session.last_round.prompts[0] == s["prompt"]
        assert session.last_round.segment_ids[0] == s["prompt_segment_ids"]
        assert streamed[-1] == s["answer"]


# --------------------------------------------------------------------------------------------
# Streaming, multi-turn, reset: tiny random model
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return synthetic_videos(tmp_path_factory.mktemp("chatvid"))


@pytest.fixture(scope="module")
def session(videos) -> ChatSession:
    from timechat.chat import load_session

    overrides = tiny_overrides(**{"eval.checkpoint": "null"})
    s = load_session(str(CFG), overrides, device="cpu")
    s.load_video(videos / "syn_test_00000.mp4")
    return s


def test_stream_ends_with_the_answer_and_greedy_ids_equal_evaluation(session, videos, tmp_path):
    from timechat.eval.inference import EvalSample, InferenceEngine, VideoItems

    q = task_question("tvg", "a red square appears", session.cfg)
    session.reset()
    streamed = list(session.stream(q))
    ids_streamed = session.last_round.generated_ids[0]
    session.reset()
    answer = session.ask(q)
    assert streamed and streamed[-1] == answer
    assert all(not a.endswith(" ") for a in streamed)  # post-processed (stripped) at every step
    assert session.last_round.generated_ids[0] == ids_streamed
    # evaluation, on the same model and sample, decodes the same ids and answer
    engine = InferenceEngine(session.engine.model, session.tokenizers, session.cfg, tmp_path)
    sample = EvalSample("0", str(videos / "syn_test_00000.mp4"), q)
    entry = engine.answer_batch([sample], [VideoItems([sample], session.cfg.num_frames,
                                                      session.engine.model.cfg.vision.image_size)[0]])[0]
    assert entry["answer"] == answer


def test_multi_turn_keeps_history_in_the_chat_template_and_reset_forgets(session):
    session.reset()
    a1 = session.ask("What happens first?")
    a2 = session.ask("And then?")
    p2 = session.last_round.prompts[0]
    assert session.history == [("What happens first?", a1), ("And then?", a2)]
    # turn 2 renders turn 1 (video message + question, answer) and the new question, LLaMA-2 style
    assert p2.count("[INST]") == 2 and p2.endswith("<s>[INST] And then? [/INST]")
    assert f"seconds.  What happens first? [/INST] {a1} </s>" in p2
    assert p2.count("<ImageHere>") == 1
    session.reset()
    assert session.history == []
    session.ask("What happens first?")
    assert session.last_round.prompts[0].count("[INST]") == 1
    assert session.last_round.generated_ids[0][:1]  # decoded something


def test_failed_turn_leaves_the_conversation_unchanged(session, monkeypatch):
    session.reset()
    before = [list(m) for m in session.state.messages]

    def boom(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("timechat.eval.inference.generate", boom)
    with pytest.raises(RuntimeError, match="out of memory"):
        session.ask("anything")
    assert session.state.messages == before


def test_video_cached_across_turns(session, monkeypatch):
    session.reset()
    calls = []
    orig = session.engine.model.encode_batch_videos
    monkeypatch.setattr(session.engine.model, "encode_batch_videos", lambda b: calls.append(1) or orig(b))
    session.ask("one")
    session.ask("two")
    assert calls == []  # encoded once, by load_video


def test_task_questions_use_the_evaluation_templates(session):
    cfg = session.cfg
    assert task_question("free", "hello", cfg) == "hello"
    # the config's own task (tvg) uses its prompt_template, filled as evaluation fills it
    assert task_question("tvg", "a red square appears.", cfg) == cfg.prompt_template.format(query="a red square appears")
    assert task_question("dvc", "ignored", cfg) == task_templates(cfg)["dvc"]
    charades = EvalConfig(dataset="charades")
    from timechat.eval.tasks.prompts import TASK_PROMPTS

    assert task_question("tvg", "person opens a door.", charades) == TASK_PROMPTS["tvg_description_zeroshot"].format(
        "charades", "person opens a door")
    with pytest.raises(ValueError, match="unknown task"):
        task_question("qa", "x", cfg)


def test_answer_spans_use_the_evaluation_parsers():
    assert answer_spans("tvg", "The event happens in the 7.0 - 3.5 seconds.") == [Span(3.5, 7.0)]
    assert answer_spans("dvc", "0.0 - 2.5 seconds, a red square appears.  3.0 - 6.0 seconds, a blue circle moves.") == [
        Span(0.0, 2.5, "a red square appears."), Span(3.0, 6.0, "a blue circle moves.")]
    vhd = answer_spans("vhd", "The highlight timestamps are in the 12, 14 seconds. Their saliency scores are 1.3, 2.7")
    assert vhd == [Span(12.0, 14.0, "1.3"), Span(14.0, 16.0, "2.7")]
    assert answer_spans("free", "It appears in 3.5 - 7.0 seconds.") == [Span(3.5, 7.0, "it appears in")]
    assert answer_spans("free", "3.5 - 7.0") == [Span(3.5, 7.0)]
    assert answer_spans("tvg", "no idea") == []


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tinyckpt") / "step_00000001")


def test_cli_answers_once(tiny_ckpt, videos, capsys):
    rc = main(["--video", str(videos / "syn_test_00000.mp4"), "--question", "When does the red square appear?",
               "--cfg-path", str(CFG), *tiny_overrides(**{"eval.checkpoint": tiny_ckpt})])
    out = capsys.readouterr()
    assert rc == 0, out.err
    # same model, same question: the library's answer
    overrides = tiny_overrides(**{"eval.checkpoint": tiny_ckpt})
    from timechat.chat import load_session

    s = load_session(str(CFG), overrides, device="cpu")
    s.load_video(videos / "syn_test_00000.mp4")
    assert out.out.splitlines()[0] == s.ask("When does the red square appear?")


def test_cli_interactive_reset_and_task(tiny_ckpt, videos, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("first\n/task tvg\na red square\n/task nope\n/reset\n/quit\n"))
    rc = main(["--video", str(videos / "syn_test_00001.mp4"), "--cfg-path", str(CFG),
               *tiny_overrides(**{"eval.checkpoint": tiny_ckpt})])
    out = capsys.readouterr().out
    assert rc == 0
    assert "task: tvg" in out and "unknown task 'nope'" in out and "conversation reset" in out
    assert out.count("timechat> ") == 2


def test_cli_sampling_options(tiny_ckpt, videos, capsys):
    argv = ["--video", str(videos / "syn_test_00000.mp4"), "--question", "q", "--cfg-path", str(CFG), "--sample",
            "--temperature", "1.5", "--top-p", "0.9", "--seed", "3", *tiny_overrides(**{"eval.checkpoint": tiny_ckpt})]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first  # seeded


def test_cli_missing_checkpoint_is_one_line(videos, tmp_path, capsys):
    missing = tmp_path / "nope" / "model.pth"
    rc = main(["--video", str(videos / "syn_test_00000.mp4"), "--question", "q", "--cfg-path", str(CFG),
               *tiny_overrides(**{"eval.checkpoint": missing})])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and str(missing) in err and "Traceback" not in err


def test_cli_7b_config_without_checkpoints_names_the_missing_file(videos, tmp_path, capsys):
    rc = main(["--video", str(videos / "syn_test_00000.mp4"), "--question", "q", "--cfg-path",
               str(REPO / "eval_configs" / "timechat_tvg_charades.yaml"), f"paths.ckpt_root={tmp_path / 'ckpt'}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert str(tmp_path / "ckpt") in err and "not found" in err


def test_cli_default_config_says_what_to_train(videos, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    rc = main(["--video", str(videos / "syn_test_00000.mp4"), "--question", "q",
               f"paths.output_root={tmp_path / 'no_outputs'}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "bash scripts/quickstart.sh" in err and str(tmp_path / "no_outputs" / "tiny_synthetic") in err


def test_cli_bad_video_is_one_line(tiny_ckpt, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 10)
    rc = main(["--video", str(bad), "--question", "q", "--cfg-path", str(CFG),
               *tiny_overrides(**{"eval.checkpoint": tiny_ckpt})])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and str(bad) in err


@pytest.mark.slow  # a subprocess that builds the model (~10 s); CI runs it
def test_python_m_timechat_chat(tiny_ckpt, videos):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "timechat.chat", "--video", str(videos / "syn_test_00000.mp4"),
                           "--question", "When?", "--cfg-path", str(CFG),
                           *tiny_overrides(**{"eval.checkpoint": tiny_ckpt})],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_cli_decoding_options_reach_the_eval_config(monkeypatch):
    import argparse

    from timechat import chat

    seen = {}
    monkeypatch.setattr(chat, "load_session", lambda cfg_path, overrides, **changes: seen.update(
        cfg_path=cfg_path, overrides=list(overrides), **changes))
    parser = argparse.ArgumentParser()
    chat.add_model_arguments(parser)
    chat.session_from_args(parser.parse_args(["--sample", "--temperature", "0.7", "--top-p", "0.9", "--seed", "5",
                                              "--max-new-tokens", "64", "eval.num_frames=32"]))
    assert seen == {"cfg_path": None, "overrides": ["eval.num_frames=32"], "do_sample": True, "temperature": 0.7,
                    "top_p": 0.9, "seed": 5, "max_new_tokens": 64}
    seen.clear()
    chat.session_from_args(parser.parse_args([]))
    assert seen == {"cfg_path": None, "overrides": []}  # greedy unless the config or --sample says otherwise
