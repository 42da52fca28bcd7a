"""Metric parity against the original TimeChat metric scripts (`reference_metrics` layout).

A fixture folder holds ``expected.json`` (one entry per case: task, gt and pred paths relative to
the folder, flags, ``status`` ``ok`` or ``crash`` and, for ok cases, the ``raw`` metrics before the
scripts' final rounding) and the per-case input files. Every case becomes one `ParityRow` named
``metrics/<case>``:

* ok case: every ``raw`` value (nested dicts flattened) within 1e-6 of ours, and our metric names
  in the reference's order (TVG adds ``mIoU``, which is ours, not the original's, and must lie in
  [0, 100]);
* crash case: where the original raised, ours must raise `MetricInputError`, the clear error the
  CLI prints; any other outcome fails.

DVC needs Java (Stanford PTB tokenizer + METEOR 1.5): all DVC cases share one `JavaSession`, and
without Java they are failed rows saying so, never passes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Collection

from timechat.io import read_json
from timechat.metrics import (
    JavaSession,
    MetricInputError,
    dvc_metrics,
    java_available,
    load_dvc_gt,
    load_dvc_pred,
    load_tvg_gt,
    load_tvg_pred,
    load_vhd_gt,
    load_vhd_pred,
    split_from_gt_path,
    tvg_metrics,
    vhd_results,
)
from timechat.reference.compare import ParityRow

TOL = 1e-6
"""Absolute tolerance on every metric value (percentages), as the metric tests always used."""

_OURS_ONLY = {"tvg": ["mIoU"]}  # metrics we add after the reference's own


def load_cases(fixture_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The ``cases`` of a reference_metrics folder's ``expected.json``, by case name."""
    return read_json(Path(fixture_dir) / "expected.json")["cases"]


def run_case(case: dict[str, Any], root: Path, session: JavaSession | None = None) -> dict[str, Any]:
    """Our metrics for one case, called as the original script was (its ``flags``)."""
    gt, pred = root / case["gt"], root / case["pred"]
    task = case["task"]
    invalid: list = []  # invalid predictions score as the original scores them here (misses)
    if task == "tvg":
        return tvg_metrics(load_tvg_pred(pred), load_tvg_gt(gt), sample="--sample" in case.get("flags", []),
                           invalid=invalid)
    if task == "vhd":
        return vhd_results(load_vhd_pred(pred), load_vhd_gt(gt), invalid=invalid)
    if task == "dvc":
        return dvc_metrics(load_dvc_pred(pred), load_dvc_gt(gt), split_from_gt_path(gt), session=session,
                           invalid=invalid)
    raise ValueError(f"unknown metric task {task!r} (expected tvg, vhd or dvc)")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts as ``{'a/b': value}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def compare_case(name: str, case: dict[str, Any], root: Path, session: JavaSession | None) -> ParityRow:
    """One case as one row (see the module docstring for what passes)."""
    tol = f"atol={TOL:g}"
    if case["status"] == "crash":
        want = case.get("error", {}).get("type", "an error")
        try:
            got = run_case(case, root, session)
        except MetricInputError as exc:
            return ParityRow(name, 0.0, "raises", True, f"MetricInputError: {exc}"[:200])
        except Exception as exc:  # noqa: BLE001 - an unclear crash is exactly what this row reports
            return ParityRow(name, float("inf"), "raises", False,
                             f"raised {type(exc).__name__}: {exc} instead of MetricInputError"[:200])
        return ParityRow(name, float("inf"), "raises", False,
                         f"returned {len(got)} metrics; the reference raised {want}")
    try:
        got = run_case(case, root, session)
    except Exception as exc:  # noqa: BLE001 - reported as a failed row naming the case
        return ParityRow(name, float("inf"), tol, False, f"{type(exc).__name__}: {exc}"[:200])
    raw = case["raw"]
    extra = _OURS_ONLY.get(case["task"], [])
    if list(got) != list(raw) + extra:
        return ParityRow(name, float("inf"), tol, False, f"metric names {list(got)} != {list(raw) + extra}")
    for key in extra:
        if not 0 <= got[key] <= 100:
            return ParityRow(name, float("inf"), tol, False, f"{key} = {got[key]!r} outside [0, 100]")
    return compare_values(name, got, raw)


def compare_values(name: str, got: dict[str, Any], want: dict[str, Any]) -> ParityRow:
    """Every (flattened) value of `want` within `TOL` of the same key in `got`; extra keys are allowed."""
    tol = f"atol={TOL:g}"
    got_flat, want_flat = flatten(got), flatten(want)
    missing = [k for k in want_flat if k not in got_flat]
    if missing:
        return ParityRow(name, float("inf"), tol, False, f"missing {missing}")
    errors = {k: abs(got_flat[k] - v) for k, v in want_flat.items()}
    worst = max(errors, key=errors.get) if errors else ""
    ok = all(math.isclose(got_flat[k], v, rel_tol=0, abs_tol=TOL) for k, v in want_flat.items())
    note = f"{len(want_flat)} values"
    if not ok:
        note += f"; {worst} = {got_flat[worst]!r}, reference {want_flat[worst]!r}"
    return ParityRow(name, errors.get(worst, 0.0), tol, ok, note)


def check_reference_metrics(fixture_dir: str | Path, tasks: Collection[str] | None = None,
                            session: JavaSession | None = None) -> list[ParityRow]:
    """Compare every case of a reference_metrics-layout folder (or only those of `tasks`).

    Args:
        fixture_dir: folder with ``expected.json`` (paths in it are relative to this folder).
        tasks: e.g. ``{"tvg", "vhd"}``; all cases when None.
        session: a `JavaSession` for the DVC cases; one is opened (and closed) here when None.

    Returns:
        one `ParityRow` per case, in ``expected.json`` order.
    """
    root = Path(fixture_dir)
    cases = {n: c for n, c in load_cases(root).items() if tasks is None or c["task"] in tasks}
    needs_java = any(c["task"] == "dvc" for c in cases.values())
    if needs_java and session is None and java_available():
        with JavaSession() as own:
            return check_reference_metrics(root, tasks, own)
    rows = []
    for name, case in cases.items():
        if case["task"] == "dvc" and session is None:
            rows.append(ParityRow(f"metrics/{name}", float("inf"), "-", False,
                                  "not run: DVC needs Java and the METEOR / Stanford CoreNLP jars"))
            continue
        rows.append(compare_case(f"metrics/{name}", case, root, session))
    return rows
