"""Command line: ``python -m timechat.data.prepare <step> [options]`` (``--help`` on each step).

Exit status: 0 when every task is done or skipped, 1 when some failed (the summary and the JSON
report name each with its reason), 2 on a usage or input error, 130 when interrupted (rerun to
resume).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from timechat.data.prepare.runner import Summary


def _compress(a: argparse.Namespace) -> Summary:
    from timechat.data.prepare.compress import compress_videos

    return compress_videos(a.input_dir, a.output_dir, fps=a.fps, short_side=a.short_side, portrait=a.portrait,
                           frame_select=a.frame_select, codec=a.codec,
                           crf=a.crf, names_file=a.names_file, workers=a.workers, progress=not a.no_progress)


def _audio(a: argparse.Namespace) -> Summary:
    from timechat.data.prepare.audio import extract_audio

    return extract_audio(a.videos_dir, a.audio_dir, names_file=a.names_file, workers=a.workers, progress=not a.no_progress)


def _asr(a: argparse.Namespace) -> Summary:
    from timechat.data.prepare.asr import transcribe_audio

    return transcribe_audio(a.audio_dir, a.output_dir, a.model, device=a.device, workers=a.workers,
                            threads_per_worker=a.threads_per_worker, progress=not a.no_progress)


def _clean_asr(a: argparse.Namespace) -> Summary:
    from timechat.data.prepare.clean_asr import clean_asr

    return clean_asr(a.raw_dir, a.clean_dir, workers=a.workers, progress=not a.no_progress)


def _audit(a: argparse.Namespace) -> Summary:
    from timechat.data.prepare.audit import audit_records

    return audit_records(a.records, a.videos_root, a.output, decode=a.decode, slack=a.slack, check_times=a.check_times,
                         fresh=a.fresh, workers=a.workers, progress=not a.no_progress)


def _valley(a: argparse.Namespace) -> Summary:
    from timechat.data.prepare.valley import convert_valley

    return convert_valley(a.input, a.output, a.videos_root, jukin_dir=a.jukin_dir, vatex_dir=a.vatex_dir,
                          vatex_raw_dir=a.vatex_raw_dir, vatex_clip=a.vatex_clip, workers=a.workers, progress=not a.no_progress)


def _hirest(a: argparse.Namespace) -> Summary:
    from timechat.data.prepare.hirest import process_hirest

    return process_hirest(a.anno_dir, a.output_dir, videos_dir=a.videos_dir, clips_dir=a.clips_dir, workers=a.workers,
                          progress=not a.no_progress)


def _coco_gt(a: argparse.Namespace) -> Summary:
    from timechat.data.prepare.coco_gt import build_coco_gt

    return build_coco_gt(a.dataset, a.anno_dir, a.output_dir, videos_dir=a.videos_dir, decode=a.decode, workers=a.workers,
                         progress=not a.no_progress)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m timechat.data.prepare",
                                     description="Prepare TimeChat data: every step is parallel, resumable and reports failures.")
    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    def add(name: str, run: Callable[[argparse.Namespace], Summary], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--workers", type=int, default=1, help="parallel tasks (default 1)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(run=run)
        return p

    p = add("compress", _compress, "Re-encode videos: video stream only, --fps frames/s, shorter side --short-side (original compress_video_data.py).")
    p.add_argument("input_dir")
    p.add_argument("output_dir")
    p.add_argument("--fps", type=float, default=3, help="output frame rate (default 3, the original's; use 6 for YouCook2/ActivityNet)")
    p.add_argument("--short-side", type=int, default=224)
    p.add_argument("--portrait", choices=["shorter-side", "original"], default="shorter-side",
                   help="portrait scaling: shorter side = --short-side, or the original's expression (height < 224)")
    p.add_argument("--frame-select", choices=["original", "exact"], default="original",
                   help="original: ffmpeg -r as the original (content ~1.25 output frames late, +2 frames); "
                        "exact: fps filter, frame k = last source frame at or before k/fps")
    p.add_argument("--codec", default=None, help="ffmpeg -c:v (default: ffmpeg's default for the container, as the original)")
    p.add_argument("--crf", type=int, default=None, help="ffmpeg -crf (default: the encoder's default)")
    p.add_argument("--names-file", default=None, help="text file of video names relative to input_dir (default: scan)")

    p = add("audio", _audio, "Extract each video's audio as 16 kHz mono WAV named <name up to the first dot>.wav.")
    p.add_argument("videos_dir")
    p.add_argument("audio_dir")
    p.add_argument("--names-file", default=None)

    p = add("asr", _asr, "Transcribe audio with whisper (local checkpoint) into raw 'start<TAB>end<TAB>text' files.")
    p.add_argument("audio_dir")
    p.add_argument("output_dir")
    p.add_argument("--model", required=True, help="local whisper checkpoint (tiny.en.pt, small.en.pt) or a folder with one .pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads-per-worker", type=int, default=0)

    p = add("clean-asr", _clean_asr, "Clean raw transcripts: drop segments under 3 words and repeats of the last kept segment.")
    p.add_argument("raw_dir")
    p.add_argument("clean_dir")

    p = add("audit", _audit, "Report records whose video is missing/unreadable/empty/too short; write the usable records.")
    p.add_argument("records", help="TimeIT or raw Valley JSON")
    p.add_argument("videos_root", help="the folder the records' video paths are relative to")
    p.add_argument("output", help="filtered JSON (the report goes beside it)")
    p.add_argument("--decode", choices=["sample", "all", "none"], default="sample")
    p.add_argument("--slack", type=float, default=1.0, help="seconds an answer time may pass the video's end")
    p.add_argument("--check-times", choices=["auto", "always", "never"], default="auto")
    p.add_argument("--fresh", action="store_true", help="ignore the journal of an earlier run")

    p = add("valley", _valley, "Raw Valley-Instruct conversations -> TimeIT JSON of the records whose video exists.")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("videos_root")
    p.add_argument("--jukin-dir", default="Valley/jukinmedia", help="relative to videos_root")
    p.add_argument("--vatex-dir", default="Valley/VATEX", help="relative to videos_root")
    p.add_argument("--vatex-raw-dir", default=None, help="raw VATEX videos to cut missing clips from")
    p.add_argument("--vatex-clip", choices=["exact", "original"], default="exact")

    p = add("hirest", _hirest, "HiREST all_data_{split}.json -> grounding_anno/ and step_anno/ (+ clips).")
    p.add_argument("anno_dir")
    p.add_argument("output_dir")
    p.add_argument("--videos-dir", default=None)
    p.add_argument("--clips-dir", default=None)

    p = add("coco-gt", _coco_gt, "{split}.caption_coco_format.json for charades, anet, youcook2 or qvhighlights.")
    p.add_argument("dataset", choices=["charades", "anet", "youcook2", "qvhighlights"])
    p.add_argument("anno_dir")
    p.add_argument("output_dir")
    p.add_argument("--videos-dir", default=None, help="drop annotations whose video is missing or broken")
    p.add_argument("--decode", choices=["sample", "all", "none"], default="none")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = args.run(args)
    except KeyboardInterrupt:
        print(f"{args.step}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.text())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
