"""`clean-asr` rules (table), `audio` + `asr` end to end on a spoken clip with a tiny random whisper."""

from __future__ import annotations

import dataclasses
import re
import wave

import pytest

from tests.data.prepare._media import need, spoken_clip
from timechat.data.asr import asr_text_from_lines, load_asr_text
from timechat.data.prepare.asr import format_segments, transcribe_audio
from timechat.data.prepare.audio import extract_audio
from timechat.data.prepare.clean_asr import clean_asr, clean_asr_lines

# (raw lines, cleaned lines): the original utils/asr/clean_asr.py, case by case
CLEAN_CASES = [
    pytest.param(["0\t1.5\tone two three\n"], ["0.00\t1.50\tone two three\n"], id="three-words-kept-times-2-decimals"),
    pytest.param(["0\t1\tone two\n"], [], id="two-words-dropped"),
    pytest.param(["0\t1\t \n"], [], id="empty-text-dropped"),
    pytest.param(["0\t1\t  a b c  \n"], ["0.00\t1.00\ta b c\n"], id="text-stripped"),
    pytest.param(["0\t1\ta b c\n", "1\t2\ta b c\n"], ["0.00\t1.00\ta b c\n"], id="consecutive-repeat-dropped"),
    pytest.param(["0\t1\ta b c\n", "1\t2\t a b c \n"], ["0.00\t1.00\ta b c\n"], id="repeat-after-strip-dropped"),
    pytest.param(["0\t1\ta b c\n", "1\t2\tA b c\n"], ["0.00\t1.00\ta b c\n", "1.00\t2.00\tA b c\n"], id="case-differs-kept"),
    pytest.param(["0\t1\ta b c\n", "1\t2\tx y\n", "2\t3\ta b c\n"], ["0.00\t1.00\ta b c\n"], id="repeat-across-dropped-short-dropped"),
    pytest.param(["0\t1\ta b c\n", "1\t2\td e f\n", "2\t3\ta b c\n"],
                 ["0.00\t1.00\ta b c\n", "1.00\t2.00\td e f\n", "2.00\t3.00\ta b c\n"], id="non-consecutive-repeat-kept"),
    pytest.param(["0\t1\ta b c.\n", "1\t2\ta b c\n"], ["0.00\t1.00\ta b c.\n", "1.00\t2.00\ta b c\n"], id="punctuation-differs-kept"),
    pytest.param(["1.005\t2.675\tx y z\n"], ["1.00\t2.67\tx y z\n"], id="python-float-formatting"),
    pytest.param(["12.3\t15\tthree  spaced   words\n"], ["12.30\t15.00\tthree  spaced   words\n"], id="inner-spaces-kept"),
    pytest.param(["0\t1\ta\tb c\n"], ["0.00\t1.00\ta\tb c\n"], id="tab-in-text-kept"),
    pytest.param(["\n", "0\t1\ta b c\n", "\n"], ["0.00\t1.00\ta b c\n"], id="blank-lines-skipped"),
    pytest.param([], [], id="empty-file"),
]


@pytest.mark.parametrize("raw, cleaned", CLEAN_CASES)
def test_clean_asr_rules(raw, cleaned):
    assert clean_asr_lines(raw) == cleaned


def test_clean_asr_rejects_malformed_lines():
    with pytest.raises(ValueError, match="x.txt:2"):
        clean_asr_lines(["0\t1\ta b c\n", "no tabs here\n"], source="x.txt")
    with pytest.raises(ValueError, match="non-numeric"):
        clean_asr_lines(["a\tb\tc d e\n"])


def test_clean_asr_folder_is_what_the_data_pipeline_reads(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = [f"{k}.0\t{k}.5\tsegment number {k}\n" for k in range(20)] + ["20.0\t21.0\tsegment number 19\n", "21\t22\tno\n"]
    (raw / "vid1.txt").write_text("".join(lines))
    (raw / "vid2.txt").write_text("")
    summary = clean_asr(raw, tmp_path / "clean", progress=False)
    assert summary.counts() == {"done": 2, "skipped": 0, "failed": 0}
    cleaned = (tmp_path / "clean" / "vid1.txt").read_text().splitlines(keepends=True)
    assert len(cleaned) == 20 and cleaned[3] == "3.00\t3.50\tsegment number 3\n"
    text = load_asr_text(tmp_path / "clean" / "vid1.txt")
    assert text == asr_text_from_lines(cleaned) and text.startswith("1.0 - 1.5 seconds, segment number 1. ")
    assert load_asr_text(tmp_path / "clean" / "vid2.txt") == "None."
    assert clean_asr(raw, tmp_path / "clean", progress=False).counts()["skipped"] == 2


def test_format_segments_is_the_original_raw_format():
    segs = [{"start": 0.0, "end": 1.005, "text": " Hello there. "}, {"start": 12.345, "end": 14.0, "text": "Bye"}]
    assert format_segments(segs) == "0.00\t1.00\tHello there.\n12.35\t14.00\tBye\n"  # f"{x:.2f}": binary rounding


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """A randomly initialised English-only whisper (1 layer, width 32) saved as openai-whisper saves checkpoints."""
    torch = pytest.importorskip("torch")
    whisper_model = pytest.importorskip("whisper.model", reason="openai-whisper not installed (pip install -e '.[prepare]')")
    torch.manual_seed(0)
    dims = whisper_model.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=1,
                                         n_vocab=51864, n_text_ctx=64, n_text_state=32, n_text_head=2, n_text_layer=1)
    model = whisper_model.Whisper(dims)
    path = tmp_path_factory.mktemp("whisper") / "tiny_random.en.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


LINE_RE = re.compile(r"^(\d+\.\d{2})\t(\d+\.\d{2})\t(.*)$")


def test_audio_then_asr_end_to_end(tmp_path, tiny_whisper):
    need("ffmpeg", "ffprobe", "espeak-ng")
    videos = tmp_path / "videos"
    videos.mkdir()
    spoken_clip(videos / "talk.take1.mp4", "Hello there. This is a test of the speech pipeline.", seconds=3.0)
    from tests.data.prepare._media import make_clip

    make_clip(videos / "silent.mp4", seconds=1)  # no audio stream: reported, no transcript

    summary = extract_audio(videos, tmp_path / "audio", progress=False)
    assert [o.key for o in summary.done] == ["talk.take1.mp4"]
    assert [(o.key, o.reason) for o in summary.failed] == [("silent.mp4", f"{videos / 'silent.mp4'}: no audio stream")]
    wav_path = tmp_path / "audio" / "talk.wav"  # named up to the first dot, as the original
    with wave.open(str(wav_path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 16000, 2)
        seconds = w.getnframes() / 16000
    assert abs(seconds - 3.0) < 0.1

    # temperature 0 only: the random model fails whisper's quality checks, and its fallback sampling at
    # temperature > 0 then meets all-NaN logits (every token suppressed); a real model does not
    summary = transcribe_audio(tmp_path / "audio", tmp_path / "raw", tiny_whisper, progress=False, temperature=0.0)
    assert summary.counts() == {"done": 1, "skipped": 0, "failed": 0}, summary.text()
    raw_lines = (tmp_path / "raw" / "talk.txt").read_text().splitlines()
    assert raw_lines, "no segment"
    for line in raw_lines:
        m = LINE_RE.match(line)
        assert m, line
        start, end = float(m.group(1)), float(m.group(2))
        assert 0.0 <= start <= end <= seconds + 0.02, line
    print("tiny random whisper wrote:", raw_lines[:2])
    rerun = transcribe_audio(tmp_path / "audio", tmp_path / "raw", tiny_whisper, progress=False, temperature=0.0)
    assert rerun.counts() == {"done": 0, "skipped": 1, "failed": 0}
    clean_asr(tmp_path / "raw", tmp_path / "clean", progress=False)
    assert (tmp_path / "clean" / "talk.txt").is_file()
    load_asr_text(tmp_path / "clean" / "talk.txt")  # parses (content is gibberish from a random model)


def test_asr_never_downloads(tmp_path):
    (tmp_path / "audio").mkdir()
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        transcribe_audio(tmp_path / "audio", tmp_path / "raw", "tiny.en", progress=False)
