"""Counts of failed attempts by reason, with the first few failing examples.

One class, `IssueStats`, serves both places that count what went wrong:

* training data: samples that could not be built (`timechat.data.datasets.SampleError` reasons such
  as ``video_missing``), counted per dataset, per DataLoader worker and per rank, then merged;
* evaluation: model answers that could not be parsed (the ``R_*`` reasons of
  `timechat.eval.tasks`), counted per task and shown in the report.

Reasons are short fixed strings (never per-sample text) so that they can be histogrammed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass
class IssueStats:
    """Attempts, failures per reason and a bounded list of failing examples.

    Attributes:
        attempts: things tried (samples built, answers parsed), failed or not.
        failures: attempts that failed.
        by_reason: reason -> number of failures.
        samples: the failing examples kept, in order of arrival: ``{"id", "reason", "text"}``.
        max_examples: how many examples are kept, per reason (``per_reason``) or in all.
        per_reason: bound the examples per reason (data errors) instead of in all (parse failures).
        max_chars: examples' text is cut to this many characters (None: kept whole).
    """

    attempts: int = 0
    failures: int = 0
    by_reason: Counter = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    max_examples: int = 5
    per_reason: bool = True
    max_chars: int | None = None

    def add(self, reason: str | None, sample_id: Any = None, text: str | None = None) -> None:
        """Count one attempt; ``reason`` None means it succeeded, else it is recorded as a failure."""
        self.attempts += 1
        if reason is not None:
            self.record(reason, sample_id, text)

    def record(self, reason: str, sample_id: Any = None, text: str | None = None) -> None:
        """Count one failure (the attempt itself is counted by `add` or by the caller)."""
        self.failures += 1
        self.by_reason[reason] += 1
        if text is not None and self.max_chars is not None:
            text = text[: self.max_chars]
        self._keep({"id": sample_id, "reason": reason, "text": text})

    def _keep(self, example: dict[str, Any]) -> None:
        if self.per_reason:
            kept = sum(1 for s in self.samples if s["reason"] == example["reason"])
        else:
            kept = len(self.samples)
        if kept < self.max_examples:
            self.samples.append(example)

    @property
    def failure_rate(self) -> float:
        """failures / attempts (0.0 before any attempt)."""
        return self.failures / self.attempts if self.attempts else 0.0

    @property
    def examples(self) -> dict[str, list[str]]:
        """reason -> ``"id: text"`` of its kept examples (the compact form of logs and checkpoints)."""
        out: dict[str, list[str]] = {}
        for s in self.samples:
            out.setdefault(s["reason"], []).append(f"{s['id']}: {s['text']}")
        return out

    def merge(self, other: "IssueStats | dict[str, Any]") -> "IssueStats":
        """Add another worker's / rank's counts (an `IssueStats` or its `to_dict`); returns self."""
        o = other if isinstance(other, IssueStats) else IssueStats.from_dict(other)
        self.attempts += o.attempts
        self.failures += o.failures
        self.by_reason.update(o.by_reason)
        for example in o.samples:
            self._keep(example)
        return self

    @classmethod
    def merged(cls, stats: Iterable["IssueStats | dict[str, Any]"]) -> "IssueStats":
        """The sum of several stats (e.g. the output of ``all_gather_object``)."""
        out = cls()
        for s in stats:
            out.merge(s)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for ``all_gather_object``, checkpoints and logs)."""
        return {"attempts": self.attempts, "failures": self.failures, "by_reason": dict(self.by_reason),
                "examples": self.examples}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IssueStats":
        """Inverse of `to_dict` (an example ``"id: text"`` is split at its first ``": "``)."""
        samples = []
        for reason, examples in d["examples"].items():
            for example in examples:
                sample_id, _, text = str(example).partition(": ")
                samples.append({"id": sample_id, "reason": reason, "text": text})
        return cls(int(d["attempts"]), int(d["failures"]), Counter(d["by_reason"]), samples)

    def summary(self) -> str:
        """One line: ``3/120 samples failed (2.50%): bad_record=1, video_missing=2``."""
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.by_reason.items()))
        head = f"{self.failures}/{self.attempts} samples failed ({self.failure_rate:.2%})"
        return head + (f": {reasons}" if reasons else "")
