"""Comparison rows for the reference-parity checks (`scripts/check_reference_parity.py`).

Every stage of the model and of the data pipeline is compared against the golden outputs of the
original implementation. Each comparison becomes one `ParityRow`; the script prints them and exits 0
only if every row is ok.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch


@dataclass
class ParityRow:
    """One compared quantity.

    Attributes:
        name: what was compared, e.g. ``model/train/logits`` or ``data/pub01/input_ids``.
        max_abs_err: largest absolute difference (0 for exact matches, ``inf`` for shape/length
            mismatches or missing values).
        tol: the tolerance that applied, as text (``exact`` or ``atol=..,rtol=..``).
        ok: whether the comparison passed.
        note: free text (shapes, first mismatch, ...).
    """

    name: str
    max_abs_err: float
    tol: str
    ok: bool
    note: str = ""


def _float64_pair(got: Any, want: Any) -> tuple[torch.Tensor, torch.Tensor, str | None]:
    """Both values as float64 CPU tensors, and a note when their shapes differ."""
    got_t = torch.as_tensor(got).detach().to("cpu", torch.float64)
    want_t = torch.as_tensor(want).detach().to("cpu", torch.float64)
    mismatch = None if got_t.shape == want_t.shape else f"shape {tuple(got_t.shape)} != {tuple(want_t.shape)}"
    return got_t, want_t, mismatch


def compare_close(name: str, got: Any, want: Any, atol: float, rtol: float = 0.0, note: str = "") -> ParityRow:
    """Compare two float tensors with ``|got - want| <= atol + rtol * |want|`` elementwise."""
    got_t, want_t, mismatch = _float64_pair(got, want)
    tol = f"atol={atol:g},rtol={rtol:g}"
    if mismatch:
        return ParityRow(name, float("inf"), tol, False, mismatch)
    if got_t.numel() == 0:
        return ParityRow(name, 0.0, tol, True, note or "empty")
    diff = (got_t - want_t).abs()
    ok = bool((diff <= atol + rtol * want_t.abs()).all()) and bool(torch.isfinite(got_t).all())
    return ParityRow(name, float(diff.max()), tol, ok, note or f"shape {tuple(want_t.shape)}")


def compare_mean_abs(name: str, got: Any, want: Any, max_mean: float, note: str = "") -> ParityRow:
    """Pass when the mean of ``|got - want|`` is at most `max_mean` (the row still reports the max).

    For outputs that only agree on average, e.g. frames scaled by another library's resampler.
    """
    got_t, want_t, mismatch = _float64_pair(got, want)
    tol = f"mean<={max_mean:g}"
    if mismatch:
        return ParityRow(name, float("inf"), tol, False, mismatch)
    diff = (got_t - want_t).abs()
    mean = float(diff.mean()) if diff.numel() else 0.0
    ok = mean <= max_mean and bool(torch.isfinite(got_t).all())
    return ParityRow(name, float(diff.max()) if diff.numel() else 0.0, tol, ok,
                     f"mean |diff| {mean:.3f}" + (f" {note}" if note else ""))


def compare_exact(name: str, got: Any, want: Any, note: str = "") -> ParityRow:
    """Compare integers, strings or nested lists of them for exact equality."""
    if isinstance(got, torch.Tensor):
        got = got.tolist()
    if isinstance(want, torch.Tensor):
        want = want.tolist()
    if got == want:
        return ParityRow(name, 0.0, "exact", True, note)
    return ParityRow(name, float("inf"), "exact", False, note or _first_difference(got, want))


def _first_difference(got: Any, want: Any, path: str = "") -> str:
    if isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)):
        for i, (g, w) in enumerate(zip(got, want)):
            if g != w:
                return _first_difference(g, w, f"{path}[{i}]")
        return f"length {len(got)} != {len(want)} at {path or 'top'}"
    return f"at {path or 'top'}: got {str(got)[:80]!r}, want {str(want)[:80]!r}"


def format_rows(rows: Sequence[ParityRow]) -> str:
    """Render rows as a fixed-width table, one line per row."""
    width = max([len(r.name) for r in rows] + [4])
    lines = [f"{'name':<{width}}  {'max_abs_err':>12}  {'tolerance':<22}  ok    note"]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {r.max_abs_err:>12.3e}  {r.tol:<22}  {'ok' if r.ok else 'FAIL':<4}  {r.note}")
    return "\n".join(lines)
