#!/usr/bin/env python
"""Compare this implementation with golden outputs of the original TimeChat.

    python scripts/check_reference_parity.py FIXTURE_DIR [--json OUT.json] [--via-pretrained]

The fixture's kind is recognised from its files:
* `reference_model` (manifest.json with a `model` block and `tensors`): every model stage (ViT,
  ln_vision, frame Q-Former, windows, video Q-Former, projection, spliced embeddings, logits, loss,
  inference context, prefill logits, greedy ids) plus the data stages of that fixture;
* `reference_data` (manifest.json with `samples` / `batches` / `inference` cases): the data pipeline;
* `reference_metrics` (expected.json with `cases`, no manifest.json): the TVG / VHD / DVC metrics,
  one row per case (DVC needs Java);
* `reference_benchmarks` (manifest.json with `benchmarks`): the QA benchmarks (MVBench, TempCompass,
  EgoSchema, Video-MME): sampling, frames, timestamp ids, prompts, contexts, answer handling, scores
  and the output files byte for byte (`timechat.reference.benchmarks`).
`--via-pretrained` (reference_model only): the fixture's original files are first converted into a
temporary one-directory checkpoint (scripts/convert_checkpoint.py's converter), and every stage is
compared on the model loaded from that directory.
One row per compared quantity; exit status 0 only if every row is within tolerance, 1 if any row
failed, 2 if the folder could not be checked at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from timechat.io import read_json  # noqa: E402
from timechat.reference.compare import ParityRow, format_rows  # noqa: E402


SUPPORTED = ("reference_model", "reference_data", "reference_metrics", "reference_benchmarks")


def fixture_kind(fixture_dir: Path) -> str:
    """The fixture layout of a folder, from its manifest.json or expected.json."""
    manifest_path = fixture_dir / "manifest.json"
    if manifest_path.is_file():
        manifest = read_json(manifest_path)
        if "model" in manifest and "tensors" in manifest:
            return "reference_model"
        if "benchmarks" in manifest:
            return "reference_benchmarks"
        if any(k in manifest for k in ("samples", "batches", "inference")):
            return "reference_data"
        raise ValueError(f"{manifest_path} is neither a reference_model, reference_data nor reference_benchmarks "
                         "manifest")
    expected_path = fixture_dir / "expected.json"
    if expected_path.is_file():
        if "cases" in read_json(expected_path):
            return "reference_metrics"
        raise ValueError(f"{expected_path} has no 'cases': not a reference_metrics fixture")
    raise FileNotFoundError(f"neither {manifest_path} nor {expected_path} found")


def run(fixture_dir: Path, via_pretrained: bool = False) -> list[ParityRow]:
    kind = fixture_kind(fixture_dir)
    if kind not in SUPPORTED:
        raise NotImplementedError(f"{fixture_dir} is a {kind} fixture; this tool does not check that kind yet "
                                  f"(supported: {', '.join(SUPPORTED)})")
    if via_pretrained and kind != "reference_model":
        raise ValueError(f"--via-pretrained needs a reference_model fixture; {fixture_dir} is {kind}")
    if kind == "reference_model":
        import tempfile

        from timechat.reference.data import check_model_fixture_data
        from timechat.reference.model import check_reference_model

        if via_pretrained:
            with tempfile.TemporaryDirectory(prefix="timechat_pretrained_") as scratch:
                return check_model_fixture_data(fixture_dir) + check_reference_model(fixture_dir, via_pretrained=scratch)
        return check_model_fixture_data(fixture_dir) + check_reference_model(fixture_dir)
    if kind == "reference_data":
        from timechat.reference.data import check_reference_data

        return check_reference_data(fixture_dir)
    if kind == "reference_benchmarks":
        from timechat.reference.benchmarks import check_reference_benchmarks

        return check_reference_benchmarks(fixture_dir)
    from timechat.reference.metrics import check_reference_metrics

    return check_reference_metrics(fixture_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixture_dir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--via-pretrained", action="store_true",
                        help="reference_model: load the model through a converted one-directory checkpoint")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    try:
        rows = run(args.fixture_dir, via_pretrained=args.via_pretrained)
    except (FileNotFoundError, ValueError, KeyError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_rows(rows))
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if rows and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
