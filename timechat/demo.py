"""A web demo: upload a video, ask, watch the answer stream and its time spans on the video's timeline.

    pip install -e ".[demo]"
    python -m timechat.demo                                  # the tiny model of the README's main command
    python -m timechat.demo --cfg-path eval_configs/timechat_tvg_charades.yaml eval.precision=bf16
    python -m timechat.demo --share                          # a public gradio.live link
    python -m timechat.demo --host 0.0.0.0                   # every address of this machine

A `timechat.chat.ChatSession` per browser tab (the model is shared; one answer is computed at a
time). Every span of an answer is read by the evaluation parser of the chosen task
(`timechat.chat.answer_spans`) and drawn under the video, over thumbnails of the sampled frames.
The model, config and decoding options are those of ``python -m timechat.chat``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from timechat.chat import (
    ChatSession,
    LoadedVideo,
    Span,
    add_model_arguments,
    answer_spans,
    one_line_error,
    session_from_args,
    startup_errors,
    task_question,
)
from timechat.data.video import VideoDecodeError

PRESETS = {
    "tvg": ("Grounding", "Query: what happens, e.g. a red square appears"),
    "dvc": ("Dense captioning", "(no query needed: the task prompt lists every event)"),
    "vhd": ("Highlights", "Query: what to find highlights of"),
    "free": ("Free chat", "Ask anything about the video"),
}
SPAN_COLOURS = ("#e4572e", "#2e86ab", "#76b041", "#f3a712", "#a23b72", "#5c4d7d")
MAX_THUMBS = 32
"""At most this many thumbnails on the timeline (evenly picked among the sampled frames)."""


# --------------------------------------------------------------------------------------------
# The timeline (HTML: thumbnails at the sampled frames, the answer's spans under them)
# --------------------------------------------------------------------------------------------


def _png_data_uri(frame: Any, height: int = 48) -> str:
    from PIL import Image

    img = Image.fromarray(frame.numpy())  # (H, W, C) uint8
    img = img.resize((max(1, round(img.width * height / img.height)), height))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def thumbnails(video: LoadedVideo) -> list[tuple[float, str]]:
    """(time, PNG data URI) of up to `MAX_THUMBS` sampled frames."""
    n = len(video.timestamps)
    m = min(n, MAX_THUMBS)
    picks = sorted({round(k * (n - 1) / max(1, m - 1)) for k in range(m)})
    return [(video.timestamps[i], _png_data_uri(video.frames[i])) for i in picks]


def timeline_html(duration: float, thumbs: Sequence[tuple[float, str]], spans: Sequence[Span]) -> str:
    """The timeline: frame thumbnails placed at their times, one coloured bar per span, a legend."""
    if duration <= 0:
        duration = max([t for t, _ in thumbs] + [s.end for s in spans] + [1.0])

    def pct(t: float) -> float:
        return 100.0 * min(max(t, 0.0), duration) / duration

    parts = [f'<div class="timechat-timeline" data-duration="{duration:g}" style="font:12px sans-serif">',
             '<div style="position:relative;height:52px;background:#111;border-radius:4px;overflow:hidden">']
    for t, uri in thumbs:
        parts.append(f'<img class="timechat-thumb" src="{uri}" title="{t:g} s" '
                     f'style="position:absolute;left:{pct(t):.2f}%;top:2px;height:48px;transform:translateX(-50%)">')
    parts.append("</div>")
    rows = max(1, len(spans))
    parts.append(f'<div style="position:relative;height:{14 * rows + 4}px;background:#f4f4f4;margin-top:2px">')
    for k, s in enumerate(spans):
        left, right = pct(s.start), pct(s.end)
        colour = SPAN_COLOURS[k % len(SPAN_COLOURS)]
        parts.append(f'<div class="timechat-span" data-start="{s.start:g}" data-end="{s.end:g}" '
                     f'title="{s.start:g} - {s.end:g} s {html.escape(s.label)}" '
                     f'style="position:absolute;left:{left:.2f}%;width:{max(right - left, 0.6):.2f}%;'
                     f'top:{2 + 14 * k}px;height:12px;background:{colour};border-radius:3px"></div>')
    parts.append("</div>")
    ticks = 5
    parts.append('<div style="display:flex;justify-content:space-between;color:#555">'
                 + "".join(f"<span>{duration * i / ticks:.1f} s</span>" for i in range(ticks + 1)) + "</div>")
    if spans:
        parts.append('<ul style="margin:4px 0;padding-left:0;list-style:none">')
        for k, s in enumerate(spans):
            colour = SPAN_COLOURS[k % len(SPAN_COLOURS)]
            label = f": {html.escape(s.label)}" if s.label else ""
            parts.append(f'<li class="timechat-span-label"><span style="color:{colour}">&#9632;</span> '
                         f"{s.start:g} - {s.end:g} s{label}</li>")
        parts.append("</ul>")
    else:
        parts.append('<div style="color:#777">no time span in the answer yet</div>')
    parts.append("</div>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


class Demo:
    """Event handlers of the page around one model (`template`: a session whose model is shared)."""

    def __init__(self, template: ChatSession) -> None:
        self.template = template

    def new_session(self) -> ChatSession:
        t = self.template
        return ChatSession(t.engine.model, t.tokenizers, t.cfg, t.engine.device)

    def load(self, path: str | None, tab: dict | None):
        """Video picked or uploaded -> (tab state, chat, timeline, status)."""
        if not path:
            return None, [], "", "Upload or pick a video to start."
        session = self.new_session()
        try:
            video = session.load_video(path)
        except (OSError, ValueError, VideoDecodeError) as exc:
            return None, [], "", f"**Cannot use this video.** {html.escape(one_line_error(exc, False)[7:])}"
        tab = {"session": session, "thumbs": thumbnails(video), "spans": []}
        status = (f"Video loaded: {len(video.timestamps)} frames sampled over {video.duration:.1f} s. "
                  "Pick a task and ask.")
        return tab, [], timeline_html(video.duration, tab["thumbs"], []), status

    def ask(self, question: str, task: str, tab: dict | None, chat: list) -> Iterator[tuple]:
        """Stream one answer -> (chat, timeline, status, question box) after every token."""
        if not tab:
            yield chat, "", "Upload or pick a video first.", question
            return
        session: ChatSession = tab["session"]
        if task in ("free", "tvg", "vhd") and not question.strip():
            yield chat, self.timeline(tab), f"Type a {'question' if task == 'free' else 'query'} first.", question
            return
        prompt = task_question(task, question, session.cfg)
        shown = question if task == "free" else f"[{PRESETS[task][0]}] {question}".rstrip()
        chat = list(chat) + [{"role": "user", "content": shown}, {"role": "assistant", "content": ""}]
        duration = session.video.duration
        text = ""
        try:
            for text in session.stream(prompt):
                chat[-1] = {"role": "assistant", "content": text}
                yield chat, timeline_html(duration, tab["thumbs"], answer_spans(task, text)), "Answering...", ""
        except Exception as exc:  # a failure shows in the page; the conversation is unchanged
            chat = chat[:-2]
            yield chat, self.timeline(tab), f"**The model failed on this question:** {html.escape(str(exc))[:500]}", question
            return
        spans = tab["spans"] = answer_spans(task, text)
        status = f"{len(spans)} time span(s) found by the {task} parser." if spans else "No time span in this answer."
        if session.truncated:
            status += (f" **The answer was cut at {session.cfg.max_new_tokens} tokens** (start the demo with a "
                       "larger --max-new-tokens for longer answers).")
        yield chat, timeline_html(duration, tab["thumbs"], spans), status, ""

    @staticmethod
    def timeline(tab: dict) -> str:
        """The timeline of a tab with the spans of its latest answer."""
        return timeline_html(tab["session"].video.duration, tab["thumbs"], tab["spans"])

    def reset(self, tab: dict | None):
        if tab:
            tab["session"].reset()
            tab["spans"] = []
            return [], self.timeline(tab), "Conversation reset (same video)."
        return [], "", "Upload or pick a video to start."


def build_demo(template: ChatSession, examples: Sequence[str] = ()) -> Any:
    """The gradio Blocks of the demo."""
    import gradio as gr

    demo = Demo(template)
    with gr.Blocks(title="TimeChat") as blocks:
        gr.Markdown("## TimeChat: talk to a video\nEvery time span in an answer is drawn on the timeline "
                    "under the video, over the frames the model saw.")
        tab = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload"], elem_id="video", height=280)
                timeline = gr.HTML(elem_id="timeline")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[video], label="Or pick a video")
            with gr.Column(scale=1):
                chat = gr.Chatbot(label="Conversation", elem_id="chat", height=280)
                task = gr.Radio([(label, key) for key, (label, _) in PRESETS.items()], value="tvg", label="Task",
                                elem_id="task")
                question = gr.Textbox(label="Question", placeholder=PRESETS["tvg"][1], elem_id="question", lines=2)
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="ask")
                    reset = gr.Button("Reset conversation", elem_id="reset")
                status = gr.Markdown("Upload or pick a video to start.", elem_id="status")
        task.change(lambda t: gr.update(placeholder=PRESETS[t][1]), [task], [question])
        video.change(demo.load, [video, tab], [tab, chat, timeline, status])
        for trigger in (ask.click, question.submit):
            trigger(demo.ask, [question, task, tab, chat], [chat, timeline, status, question])
        reset.click(demo.reset, [tab], [chat, timeline, status])
    return blocks


def default_examples(session: ChatSession, limit: int = 4) -> list[str]:
    """A few videos of the config's `eval.videos_dir`, when it exists."""
    folder = Path(session.cfg.videos_dir) if session.cfg.videos_dir else None
    if folder is None or not folder.is_dir():
        return []
    return [str(p) for p in sorted(folder.glob("*.mp4"))[:limit]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: this machine only; 0.0.0.0: every network it is on)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs internet)")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("error: the demo needs gradio: pip install -e \".[demo]\"", file=sys.stderr)
        return 2
    try:
        session = session_from_args(args)
    except startup_errors() as exc:
        print(one_line_error(exc, args.cfg_path is None), file=sys.stderr)
        return 2
    examples = default_examples(session)
    blocks = build_demo(session, examples)
    where = f"http://{args.host}:{args.port}"
    if args.host in ("127.0.0.1", "localhost") and not args.share:
        print(f"TimeChat demo on {where} (this machine only). To share it: --share for a public link, or "
              "--host 0.0.0.0 for your network.", flush=True)
    else:
        print(f"TimeChat demo on {where}" + (" and a public gradio.live link (below)" if args.share else ""), flush=True)
    blocks.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, share=args.share,
        allowed_paths=[str(Path(e).parent.resolve()) for e in examples[:1]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
