"""Talk to a video: a multi-turn chat session (library) and ``python -m timechat.chat`` (CLI).

Mirrors the original's ``Chat`` (``conversation_video.py``: ``upload_video_without_audio`` once,
then ``ask`` / ``answer`` per turn, in the ``conv_llava_llama_2`` template) with the pieces evaluation
uses, so a session and `evaluate.py` build the same prompt and decode it the same way:
`timechat.eval.inference.decode_video` (uniform frames, timestamps, eval transform),
`InferenceEngine.encode_videos` (timestamp tokenizer of the inference path), `ChatState` (prompt) and
`InferenceEngine.answer_round` (segments, left-padded context, `generate`, answer post-processing).
The video is decoded and encoded once per `load_video`; each turn only runs the language model.

    python -m timechat.chat --video data/synthetic/videos/test/test_0000.mp4 --question "When does the red square appear?"
    python -m timechat.chat --video my.mp4                      # interactive: /reset, /task tvg|dvc|vhd|free, /quit
    python -m timechat.chat --cfg-path eval_configs/timechat_tvg_charades.yaml --video my.mp4 eval.precision=bf16

Without ``--cfg-path`` it talks to the tiny model the README's main command trains
(``eval_configs/tiny_synthetic.yaml``: ``outputs/tiny_synthetic``, newest checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from timechat.config import EvalConfig
from timechat.data.conversation import ChatState, postprocess_answer
from timechat.data.video import VideoDecodeError
from timechat.eval.inference import AnswerRound, InferenceEngine, decode_video

TASKS = ("tvg", "dvc", "vhd", "free")
"""Chat tasks: the three evaluation tasks with spans in their answers, and free questions."""
DEFAULT_TASK_PROMPTS = {"tvg": "tvg_description_zeroshot", "dvc": "dvc_description_zeroshot",
                        "vhd": "vhd_description_zeroshot"}
"""Task prompt (`timechat.eval.tasks.prompts.TASK_PROMPTS`) of each task, as evaluation uses it."""
DEFAULT_CONFIG = "eval_configs/tiny_synthetic.yaml"
TRAIN_HINT = ("the tiny model is trained by the README's main command: bash scripts/quickstart.sh "
              "(or python train.py --cfg-path train_configs/tiny_synthetic.yaml)")


# --------------------------------------------------------------------------------------------
# Task prompts and the spans of an answer
# --------------------------------------------------------------------------------------------


def task_templates(cfg: EvalConfig) -> dict[str, str]:
    """The prompt template of each task for a config.

    The config's own task uses its own template (`eval.prompt_template` or `eval.prompt`); the other
    tasks use the evaluation prompts, or for the synthetic dataset the first training template of
    the task (what the tiny model was taught).
    """
    from timechat.eval.tasks.prompts import get_prompt, resolve_prompt

    if cfg.dataset == "synthetic":
        from timechat.data.synthetic import DVC_TEMPLATES, TVG_TEMPLATES, VHD_TEMPLATES

        out = {"tvg": TVG_TEMPLATES[0], "dvc": DVC_TEMPLATES[0], "vhd": VHD_TEMPLATES[0]}
    else:
        out = {task: get_prompt(name) for task, name in DEFAULT_TASK_PROMPTS.items()}
    if cfg.task in out:
        out[cfg.task] = cfg.prompt_template or resolve_prompt(cfg.prompt)
    return out


def task_question(task: str, text: str, cfg: EvalConfig) -> str:
    """The user message for `text` under `task`.

    ``free``: `text` itself; ``tvg`` / ``vhd``: `text` is the query, filled into the task template
    as evaluation fills it; ``dvc``: the task prompt (it takes no query; `text` is ignored).
    """
    from timechat.eval.tasks.common import fill_query_prompt

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if task == "free":
        return text
    template = task_templates(cfg)[task]
    if task == "dvc":
        return template
    return fill_query_prompt(template, cfg.dataset, text)


@dataclass(frozen=True)
class Span:
    """A time span of an answer (seconds); `label` is its caption or saliency score, if any."""

    start: float
    end: float
    label: str = ""


def answer_spans(task: str, text: str) -> list[Span]:
    """Every time span of an answer, read by the evaluation parser of `task`.

    ``tvg``: `extract_time` (one span); ``dvc``: `format_dvc_output` (captioned events); ``vhd``:
    `parse_vhd_highlights` (one 2 s clip per highlight, labelled with its score); ``free``: the DVC
    parser, else the TVG one. Spans are ordered (start <= end); an unparseable answer gives none.
    """
    from timechat.eval.tasks.dense_captioning import format_dvc_output
    from timechat.eval.tasks.grounding import extract_time
    from timechat.eval.tasks.highlights import VHD_CLIP_SECONDS, parse_vhd_highlights

    def ordered(a: float, b: float, label: str = "") -> Span:
        return Span(min(a, b), max(a, b), label)

    if task == "vhd":
        res = parse_vhd_highlights(text)
        if not res.ok:
            return []
        return [Span(t, t + VHD_CLIP_SECONDS, f"{s:g}") for t, s in zip(res.value["timestamps"], res.value["scores"])]
    if task in ("dvc", "free"):
        res = format_dvc_output(text)
        if res.ok:
            return [ordered(*e["timestamp"], e["caption"]) for e in res.value]
        if task == "dvc":
            return []
    res = extract_time(text)
    return [ordered(*res.value)] if res.ok else []


# --------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------


@dataclass
class LoadedVideo:
    """A decoded and encoded video, kept for the whole conversation.

    Attributes:
        path: the file; frames: (T, H, W, C) uint8 sampled frames (at the model's image size);
        timestamps: T seconds of the sampled frames; duration: seconds (frames / fps);
        msg: the timestamp message of the first user turn; tokens: (N, D_llm) video tokens.
    """

    path: str
    frames: torch.Tensor
    timestamps: list[float]
    duration: float
    msg: str
    tokens: torch.Tensor


class ChatSession:
    """A conversation about one video in the original ``Chat`` template.

    Args:
        model: a `TimeChat` in eval mode on `device`.
        tokenizers: `timechat.factory.Tokenizers`.
        cfg: the eval settings (frames, system text, decoding, precision, timestamp tokenizer).
        device: the model's device.

    Use `load_video` once, then `ask` (or `stream`) per turn; `reset` starts the conversation over
    on the same video.
    """

    def __init__(self, model: Any, tokenizers: Any, cfg: EvalConfig, device: torch.device | str = "cpu") -> None:
        # The engine is used only for its per-batch steps; it writes nothing (no `run`).
        self.engine = InferenceEngine(model, tokenizers, cfg, output_dir=".", device=device, rank=0, world_size=1)
        self.cfg = cfg
        self.tokenizers = tokenizers
        self.video: LoadedVideo | None = None
        self.state: ChatState | None = None
        self.history: list[tuple[str, str]] = []
        self.last_round: AnswerRound | None = None
        """Prompt, segment ids and generated ids of the latest turn."""

    @property
    def tokenizer(self) -> Any:
        return self.engine.llama_tok

    @torch.no_grad()
    def load_video(self, path: str | os.PathLike) -> LoadedVideo:
        """Decode, encode and keep `path`; starts a new conversation.

        Raises:
            `timechat.data.video.VideoDecodeError` (or the decoder's error) for a file it cannot read.
        """
        clip, item = decode_video(path, self.cfg.frame_budget, self.engine.model.cfg.vision.image_size)
        with self.engine.autocast():
            tokens = self.engine.encode_videos([item])[0]  # (N, D_llm)
        self.video = LoadedVideo(str(path), clip.frames, [float(t) for t in clip.timestamps],
                                 clip.vlen / clip.fps if clip.fps else 0.0, clip.msg, tokens)
        self.reset()
        return self.video

    def reset(self) -> None:
        """Forget the conversation, keep the video (``Chat``: a fresh conv + ``upload_video``)."""
        if self.video is None:
            raise RuntimeError("no video loaded: call load_video first")
        self.state = ChatState(system=self.engine.system)
        self.state.upload_video(self.video.msg)
        self.history = []
        self.last_round = None

    @property
    def truncated(self) -> bool:
        """Whether the latest answer stopped at `max_new_tokens` instead of ending by itself."""
        if self.last_round is None:
            return False
        row = self.last_round.generated_ids[0]
        return len(row) >= self.cfg.max_new_tokens and self.engine.generation_config(0, 0).eos_token_id not in row

    @torch.no_grad()
    def ask(self, question: str, on_text: Callable[[str], None] | None = None) -> str:
        """Answer `question` in this conversation (``Chat.ask`` + ``Chat.answer``).

        Args:
            question: the user message (see `task_question` for the task prompts).
            on_text: called with the answer so far (post-processed) after every decoded token.
        Returns:
            The post-processed answer, also stored as the assistant turn.
        """
        if self.state is None:
            raise RuntimeError("no video loaded: call load_video first")
        saved = [list(m) for m in self.state.messages]
        ids: list[int] = []

        def on_token(nxt: torch.Tensor) -> None:
            ids.append(int(nxt[0]))
            on_text(postprocess_answer(ids, self.tokenizer))

        self.state.ask(question)
        try:
            with self.engine.autocast():
                done = self.engine.answer_round([self.state], [self.video.tokens],
                                                self.engine.generation_config(0, len(self.history)),
                                                on_token=on_token if on_text else None)
        except BaseException:
            self.state.messages = saved  # a failed turn leaves the conversation as it was
            raise
        self.last_round = done
        self.history.append((question, done.answers[0]))
        return done.answers[0]

    def stream(self, question: str) -> Iterator[str]:
        """`ask`, yielding the answer so far whenever it changes; the last value is the answer."""
        updates: queue.Queue = queue.Queue()
        result: dict[str, Any] = {}
        end = object()

        def work() -> None:
            try:
                result["answer"] = self.ask(question, on_text=updates.put)
            except BaseException as exc:  # re-raised in the caller's thread
                result["error"] = exc
            finally:
                updates.put(end)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        last = None
        while (text := updates.get()) is not end:
            if text != last:
                last = text
                yield text
        thread.join()
        if "error" in result:
            raise result["error"]
        if result["answer"] != last:
            yield result["answer"]


# --------------------------------------------------------------------------------------------
# Building a session from a config (the CLI and the demo)
# --------------------------------------------------------------------------------------------


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The config and decoding options shared by the CLI and the web demo."""
    parser.add_argument("--cfg-path", "--cfg_path", default=None,
                        help=f"eval config (eval_configs/...); default: {DEFAULT_CONFIG}, the tiny model of the "
                             "README's main command")
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (with --sample)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (with --sample)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="answer length cap (tokens)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: eval.device of the config)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, as evaluate.py")


def load_session(cfg_path: str | os.PathLike | None = None, overrides: Sequence[str] = (), **eval_changes: Any
                 ) -> ChatSession:
    """Build the model of a config + `key=value` overrides (as `evaluate.py` does) and a session on it.

    Args:
        cfg_path: an eval config; None: `DEFAULT_CONFIG` (the tiny model of the README's main command).
        overrides: `key=value` strings, e.g. ``["eval.num_frames=32"]``.
        eval_changes: `EvalConfig` fields to set last (``do_sample=True``, ``temperature=0.7``, ``device="cuda"``).
    Raises:
        FileNotFoundError / KeyError / ValueError (see `startup_errors`) naming the missing file or the bad key.
    """
    from timechat.config import eval_config, load_config, resolve_config
    from timechat.eval.run import build_eval_model

    cfg = load_config(cfg_path or DEFAULT_CONFIG, list(overrides))
    if "eval" not in cfg or "model" not in cfg:
        raise KeyError(f"{cfg_path}: an eval config needs 'model' and 'eval' sections")
    ecfg = dataclasses.replace(eval_config(cfg), batch_size=1, **eval_changes)
    device = torch.device(ecfg.device if ecfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model, tokenizers, _, _ = build_eval_model(resolve_config(cfg), ecfg, device)
    return ChatSession(model, tokenizers, ecfg, device)


def session_from_args(args: argparse.Namespace) -> ChatSession:
    """`load_session` with the options of `add_model_arguments`."""
    changes = {"do_sample": True} if args.sample else {}
    for key in ("temperature", "top_p", "seed", "max_new_tokens", "device"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    return load_session(args.cfg_path, args.overrides, **changes)


def startup_errors() -> tuple[type[BaseException], ...]:
    """The errors of building a model or reading a video that name their cause (shown as one line)."""
    from timechat.checkpoint import CheckpointError
    from timechat.data.tokenization import TokenizerLoadError

    return (OSError, KeyError, ValueError, VideoDecodeError, TokenizerLoadError, CheckpointError)


def one_line_error(exc: BaseException, default_config: bool) -> str:
    """`exc` as one line (no traceback); with the default config, how to train the missing model."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    line = f"error: {' '.join(str(msg).split())}"
    if default_config and isinstance(exc, FileNotFoundError):
        line += f" -- {TRAIN_HINT}"
    return line


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

HELP = """commands: /reset (forget the conversation), /task tvg|dvc|vhd|free (task prompt of the next
questions: tvg/vhd take a query, dvc takes none), /video PATH (another video), /quit"""


def _print_answer(session: ChatSession, task: str, question: str, out) -> str:
    printed = ""
    for text in session.stream(question):
        if text.startswith(printed):
            out.write(text[len(printed):])
        else:  # post-processing rewrote the start (rare): print the whole answer again
            out.write("\n" + text)
        out.flush()
        printed = text
    out.write("\n")
    spans = answer_spans(task, printed)
    if spans:
        out.write("spans: " + "; ".join(f"{s.start:g} - {s.end:g} s" + (f" ({s.label})" if s.label else "")
                                        for s in spans) + "\n")
    if session.truncated:
        out.write(f"(answer cut at {session.cfg.max_new_tokens} tokens: raise --max-new-tokens)\n")
    return printed


def _interactive(session: ChatSession, task: str, out) -> None:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    out.write(f"video: {session.video.path} ({len(session.video.timestamps)} frames, "
              f"{session.video.duration:.1f} s); task: {task}\n{HELP}\n")
    while True:
        try:
            line = input(f"[{task}] you> ").strip()
        except EOFError:
            out.write("\n")
            return
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return
        if line == "/reset":
            session.reset()
            out.write("conversation reset\n")
            continue
        if line.startswith("/task"):
            name = line[len("/task"):].strip()
            if name not in TASKS:
                out.write(f"unknown task {name!r}; expected one of {', '.join(TASKS)}\n")
            else:
                task = name
                out.write(f"task: {task}\n")
            continue
        if line.startswith("/video"):
            try:
                session.load_video(line[len("/video"):].strip())
                out.write(f"video: {session.video.path}; conversation reset\n")
            except (OSError, VideoDecodeError) as exc:
                out.write(one_line_error(exc, False) + "\n")
            continue
        if line.startswith("/"):
            out.write(HELP + "\n")
            continue
        out.write("timechat> ")
        _print_answer(session, task, task_question(task, line, session.cfg), out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", required=True, help="video file")
    parser.add_argument("--question", default=None, help="answer this once and exit (default: interactive)")
    parser.add_argument("--task", choices=TASKS, default="free",
                        help="free: the question as typed; tvg/vhd: the question is the query of the task "
                             "prompt; dvc: the task prompt")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        session = session_from_args(args)
        session.load_video(args.video)
    except startup_errors() as exc:
        print(one_line_error(exc, args.cfg_path is None), file=sys.stderr)
        return 2
    if args.question is not None:
        _print_answer(session, args.task, task_question(args.task, args.question, session.cfg), out)
        return 0
    _interactive(session, args.task, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
