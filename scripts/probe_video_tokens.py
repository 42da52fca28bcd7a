#!/usr/bin/env python
"""What do a trained tiny TimeChat's video tokens carry? Linear probes on the LLM-input tokens.

For the first ``--videos`` training videos of the synthetic data, the video is encoded as the chat
session encodes it (``timechat.chat.load_session``: decode, frozen ViT, timestamp-aware frame
Q-Former, video Q-Former, projection), and each sampled frame's tokens (one window per frame in the
tiny config) are labelled with

* the shape type visible at the frame's time (one of ``num_event_types``, or "none"), and
* the frame's time in seconds.

Three linear probes are fitted on the first ``--fit`` videos' frames and scored on the rest:
the shape type (accuracy), the time (mean absolute error in seconds) and the whole second
(accuracy of a classifier over ``floor(t)``). Features are standardised with the fit part's
statistics; the classifiers are full-batch Adam (fixed step counts, seeded), the time probe is ridge
regression solved in closed form.

    python scripts/probe_video_tokens.py --checkpoint outputs/tiny_synthetic/checkpoints/step_00001800 \
        [--data-root data] [--videos 300] [--fit 200] [--out probe.json]

The README's "The embedded default learns" quotes this script's output for the default runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timechat.data.synthetic import load_events  # noqa: E402


def frame_labels(events: list[dict], times: list[float], none_label: int) -> list[int]:
    """The shape type visible at each time (``start <= t < end``), else `none_label`."""
    labels = []
    for t in times:
        hit = [e["type"] for e in events if e["start"] <= t < e["end"]]
        labels.append(hit[0] if hit else none_label)
    return labels


def _standardise(fit: torch.Tensor, held: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, sd = fit.mean(0), fit.std(0) + 1e-5
    return (fit - mu) / sd, (held - mu) / sd


def _classifier(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int, seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(x), y).backward()
        opt.step()
    return lin


def probe(features: torch.Tensor, types: torch.Tensor, times: torch.Tensor, n_fit: int,
          num_types: int, seed: int = 0, ridge: float = 1e-3) -> dict[str, float]:
    """Fit the three probes on rows ``[:n_fit]`` and score them on ``[n_fit:]``.

    Args:
        features: (N, F) one row per frame; types: (N,) in ``0..num_types`` (``num_types`` = none);
        times: (N,) seconds.
    """
    if not 0 < n_fit < features.shape[0]:
        raise ValueError(f"n_fit must leave rows on both sides, got {n_fit} of {features.shape[0]}")
    fit, held = _standardise(features[:n_fit].float(), features[n_fit:].float())
    with torch.enable_grad():
        shape = _classifier(fit, types[:n_fit], num_types + 1, 300, seed)
        seconds = times.floor().long()
        second = _classifier(fit, seconds[:n_fit], int(seconds.max()) + 1, 400, seed)
    # The time probe is ridge regression in closed form (centred target, standardised features).
    mean_t = times[:n_fit].mean()
    gram = fit.T @ fit + ridge * n_fit * torch.eye(fit.shape[1])
    w = torch.linalg.solve(gram, fit.T @ (times[:n_fit] - mean_t))
    with torch.no_grad():
        return {
            "shape_accuracy_fit": (shape(fit).argmax(1) == types[:n_fit]).float().mean().item(),
            "shape_accuracy_heldout": (shape(held).argmax(1) == types[n_fit:]).float().mean().item(),
            "time_mae_s_fit": (fit @ w + mean_t - times[:n_fit]).abs().mean().item(),
            "time_mae_s_heldout": (held @ w + mean_t - times[n_fit:]).abs().mean().item(),
            "time_mae_s_predict_mean": (times[n_fit:] - mean_t).abs().mean().item(),
            "second_accuracy_heldout": (second(held).argmax(1) == seconds[n_fit:]).float().mean().item(),
            "frames_fit": n_fit,
            "frames_heldout": features.shape[0] - n_fit,
        }


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a training step folder (eval.checkpoint)")
    ap.add_argument("--data-root", default="data", help="paths.data_root holding synthetic/")
    ap.add_argument("--cfg-path", default=None, help="eval config (default: the tiny synthetic one)")
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--fit", type=int, default=200, help="videos whose frames fit the probes")
    ap.add_argument("--num-event-types", type=int, default=4)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    from timechat.chat import load_session

    session = load_session(args.cfg_path, [f"eval.checkpoint={args.checkpoint}", f"paths.data_root={args.data_root}"])
    root = Path(args.data_root) / "synthetic"
    videos = load_events(root, "train")[: args.videos]
    rows, types, times, fit_rows = [], [], [], 0
    for i, v in enumerate(videos):
        loaded = session.load_video(root / v["video"])
        t = len(loaded.timestamps)
        per_frame = loaded.tokens.shape[0] // t
        rows += [loaded.tokens[f * per_frame:(f + 1) * per_frame].flatten().float() for f in range(t)]
        types += frame_labels(v["events"], loaded.timestamps, args.num_event_types)
        times += list(loaded.timestamps)
        if i + 1 == args.fit:
            fit_rows = len(rows)
    result = probe(torch.stack(rows), torch.tensor(types), torch.tensor(times, dtype=torch.float32), fit_rows,
                   args.num_event_types)
    result.update(checkpoint=str(args.checkpoint), videos=len(videos))
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
