"""The web demo in a real browser: headless Chromium (Debian's package) driven by Selenium.

Starts ``python -m timechat.demo`` on a tiny model in a temp dir, uploads a synthetic video, asks a
grounding question, and checks that the answer streams into the chat and that its span is drawn on
the timeline (at the position the evaluation parser reads from the answer). Saves the screenshot the
README shows (docs/demo.png).

The tiny model is random except that it was fitted, in a few dozen steps, to answer this one
question with the video's annotated span: the test is about the page, not the model.

Marked ``browser``; skipped when chromium, chromedriver, gradio or selenium is missing (an error
instead with ``TIMECHAT_REQUIRE_BROWSER=1``, as in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_chat import CFG, REPO, synthetic_videos, tiny_overrides, write_tiny_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a real Chromium session (~40 s); CI runs it

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = REPO / "docs" / "demo.png"


def _missing() -> str | None:
    for module in ("gradio", "selenium"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[demo]' selenium)"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium / chromedriver not found (apt-get install chromium chromium-driver)"
    return None


if _missing():
    # CI sets TIMECHAT_REQUIRE_BROWSER=1 so that a broken browser install fails instead of skipping
    if os.environ.get("TIMECHAT_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"TIMECHAT_REQUIRE_BROWSER=1 but {_missing()}")
    pytest.skip(_missing(), allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    from timechat.chat import task_question
    from timechat.config import eval_config, load_config

    root = tmp_path_factory.mktemp("demo")
    videos = synthetic_videos(root)
    video = str(videos / "syn_test_00000.mp4")
    ann = json.loads((root / "synthetic/annotations/tvg_test.caption_coco_format.json").read_text())["annotations"]
    first = next(a for a in ann if a["image_id"] == "syn_test_00000.mp4")
    start, end = first["timestamp"]
    query, answer = first["caption"], f"{first['caption'].capitalize()} in {start:.1f} - {end:.1f} seconds."
    question = task_question("tvg", query, eval_config(load_config(CFG, tiny_overrides())))
    ckpt = write_tiny_model(root / "model" / "step_00000001", teach=(video, question, answer))
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(root / "demo.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "timechat.demo", "--cfg-path", str(CFG), "--port", str(port),
                             *tiny_overrides(**{"eval.checkpoint": ckpt, "eval.max_new_tokens": 24,
                                                "eval.videos_dir": videos})],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the demo exited: {(root / 'demo.log').read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"the demo did not start in 240 s: {(root / 'demo.log').read_text()[-3000:]}")
    yield {"url": url, "video": video, "log": root / "demo.log", "query": query, "answer": answer, "span": (start, end)}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def _wait(driver, what, timeout: float = 120.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: what(d))


def test_demo_answers_and_draws_the_span(demo_url, browser):
    from selenium.webdriver.common.by import By

    browser.get(demo_url["url"])
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#video input[type=file]"))
    # the video: an upload through the file input of the video component
    browser.find_element(By.CSS_SELECTOR, "#video input[type=file]").send_keys(demo_url["video"])
    _wait(browser, lambda d: "Video loaded" in d.find_element(By.ID, "status").text)
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#timeline .timechat-thumb")
    assert len(thumbs) == 8  # eval.num_frames sampled frames

    # grounding is the default preset; the question is the query
    box = browser.find_element(By.CSS_SELECTOR, "#question textarea")
    box.send_keys(demo_url["query"])
    browser.find_element(By.ID, "ask").click()
    _wait(browser, lambda d: "time span(s) found" in d.find_element(By.ID, "status").text
          or "No time span" in d.find_element(By.ID, "status").text, timeout=180)
    chat_text = browser.find_element(By.ID, "chat").text
    assert demo_url["answer"] in chat_text, chat_text
    assert demo_url["query"] in chat_text
    start, end = demo_url["span"]
    spans = browser.find_elements(By.CSS_SELECTOR, "#timeline .timechat-span")
    assert [(float(s.get_attribute("data-start")), float(s.get_attribute("data-end"))) for s in spans] == [(start, end)]
    # drawn where it belongs: start .. end of the video's duration, along the thumbnail strip
    strip = browser.find_element(By.CSS_SELECTOR, "#timeline .timechat-timeline").rect
    bar = spans[0].rect
    duration = float(browser.find_element(By.CSS_SELECTOR, "#timeline .timechat-timeline").get_attribute("data-duration"))
    assert bar["x"] - strip["x"] == pytest.approx(strip["width"] * start / duration, abs=3)
    assert bar["width"] == pytest.approx(strip["width"] * (end - start) / duration, abs=3)
    assert f"{start:g} - {end:g} s" in browser.find_element(By.ID, "timeline").text

    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.set_window_size(1280, 860)
    browser.save_screenshot(str(SCREENSHOT))
    _shrink_png(SCREENSHOT)
    assert SCREENSHOT.stat().st_size < 400_000


def test_demo_bad_video_gives_a_message(demo_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 20)
    browser.get(demo_url["url"])
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#video input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#video input[type=file]").send_keys(str(bad))
    _wait(browser, lambda d: "Cannot use this video" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "ask").is_displayed()  # the page is still alive


def _shrink_png(path: Path) -> None:
    """Keep the committed screenshot small: palette PNG."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    img.quantize(colors=128).save(path, optimize=True)
