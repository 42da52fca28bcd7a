#!/usr/bin/env python
"""Compare this implementation with golden outputs of the original TimeChat.

    python scripts/check_reference_parity.py FIXTURE_DIR [--json OUT.json]

The fixture's kind is read from its manifest.json:
* `reference_model` layout (a `model` block and `tensors`): every model stage (ViT, ln_vision,
  frame Q-Former, windows, video Q-Former, projection, spliced embeddings, logits, loss, inference
  context, prefill logits, greedy ids) plus the data stages of that fixture;
* `reference_data` layout (`samples` / `batches` / `inference` cases): the data pipeline.
One row per compared tensor; exit status 0 only if every row is within tolerance.
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

from timechat.reference.compare import ParityRow, format_rows  # noqa: E402


def fixture_kind(manifest: dict) -> str:
    if "model" in manifest and "tensors" in manifest:
        return "reference_model"
    if any(k in manifest for k in ("samples", "batches", "inference")):
        return "reference_data"
    raise ValueError("manifest.json is neither a reference_model nor a reference_data fixture")


def run(fixture_dir: Path) -> list[ParityRow]:
    manifest_path = fixture_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found")
    manifest = json.loads(manifest_path.read_text())
    kind = fixture_kind(manifest)
    rows: list[ParityRow] = []
    if kind == "reference_model":
        from timechat.reference.data import check_model_fixture_data
        from timechat.reference.model import check_reference_model

        rows += check_model_fixture_data(fixture_dir)
        rows += check_reference_model(fixture_dir)
    else:
        from timechat.reference.data import check_reference_data

        rows += check_reference_data(fixture_dir)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixture_dir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    try:
        rows = run(args.fixture_dir)
    except (FileNotFoundError, ValueError, KeyError) as exc:
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
