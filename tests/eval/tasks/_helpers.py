"""Helpers of the task tests: reference inference cases, merged-result entries, small json files."""

from __future__ import annotations

import json
from pathlib import Path


def inference_case(reference_data_dir: Path, case_id: str) -> tuple[dict, dict, dict]:
    """``(manifest, case, expected)`` of an inference case of the reference fixtures."""
    manifest = json.loads((reference_data_dir / "manifest.json").read_text())
    case = next(c for c in manifest["inference"] if c["id"] == case_id)
    expected = json.loads((reference_data_dir / case["expected"]).read_text())
    return manifest, case, expected


def round_of(expected: dict, name: str) -> dict:
    """One conversation round (``main``, ``post_check``) of an expected inference output."""
    return next(r for r in expected["rounds"] if r["round"] == name)


def answers(expected: dict, round_name: str = "main") -> list[str]:
    """The model answers of one round."""
    return round_of(expected, round_name)["answer_texts"]


def entry(sample, answer=None, error=None) -> dict:
    """A merged-results entry for ``sample``: answered, or failed to decode when ``error`` is given."""
    e = {"id": sample.id, "video": sample.video, "prompt": sample.prompt, "meta": sample.meta}
    if error:
        e.update(error=error, error_type="undecodable")
    else:
        e.update(answer=answer, answers=[answer])
    return e


def write_json(path: Path, obj) -> str:
    """Write ``obj`` as json to ``path``; returns the path as a string."""
    path.write_text(json.dumps(obj))
    return str(path)
