"""The web demo's handlers without a browser (gradio not needed): timeline, streaming, messages.

The real-browser test is tests/test_demo_browser.py.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from timechat.chat import Span, load_session
from timechat.demo import Demo, thumbnails, timeline_html

from test_chat import CFG, synthetic_videos, tiny_overrides


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    overrides = tiny_overrides(**{"eval.checkpoint": "null"})
    videos = synthetic_videos(tmp_path_factory.mktemp("demovid"))
    return Demo(load_session(str(CFG), overrides, device="cpu")), videos


def test_timeline_places_thumbnails_and_spans():
    thumbs = [(0.0, "data:a"), (5.0, "data:b"), (10.0, "data:c")]
    page = timeline_html(10.0, thumbs, [Span(2.5, 5.0, "a <b>red</b> square"), Span(8.0, 30.0)])
    assert page.count('class="timechat-thumb"') == 3
    assert re.findall(r'data-start="([\d.]+)" data-end="([\d.]+)"', page) == [("2.5", "5"), ("8", "30")]
    assert "left:25.00%;width:25.00%" in page  # 2.5 .. 5 s of 10 s
    assert "left:80.00%;width:20.00%" in page  # clipped to the video's end
    assert "a &lt;b&gt;red&lt;/b&gt; square" in page and "<b>red" not in page
    assert "no time span" in timeline_html(10.0, thumbs, [])


def test_load_ask_stream_reset(demo):
    d, videos = demo
    tab, chat, page, status = d.load(str(videos / "syn_test_00000.mp4"), None)
    assert "Video loaded: 8 frames" in status and page.count("timechat-thumb") == 8
    assert len(thumbnails(tab["session"].video)) == 8
    updates = list(d.ask("a red square appears", "tvg", tab, chat))
    chat, page, status, box = updates[-1]
    session = tab["session"]
    assert chat[0] == {"role": "user", "content": "[Grounding] a red square appears"}
    assert chat[1] == {"role": "assistant", "content": session.history[0][1]}
    assert [u[0][1]["content"] for u in updates[:-1]][-1] == session.history[0][1]  # streamed up to the answer
    assert box == ""
    assert ("time span(s) found" in status) or ("No time span" in status)
    assert "cut at 12 tokens" in status  # the random model never stops within eval.max_new_tokens
    chat2 = list(d.ask("and then?", "free", tab, chat))[-1][0]
    assert len(chat2) == 4 and len(session.history) == 2
    chat3, page3, status3 = d.reset(tab)
    assert chat3 == [] and session.history == [] and "reset" in status3


def test_bad_video_and_missing_input_give_messages(demo, tmp_path):
    d, videos = demo
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 50)
    tab, chat, page, status = d.load(str(bad), None)
    assert tab is None and "Cannot use this video" in status and "broken.mp4" in status
    assert "video first" in list(d.ask("q", "tvg", None, []))[-1][2]
    tab = d.load(str(videos / "syn_test_00001.mp4"), None)[0]
    assert "query first" in list(d.ask("  ", "tvg", tab, []))[-1][2]
