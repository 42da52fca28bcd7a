"""TimeChat metrics: pure functions (predictions, ground truth) -> dict of metric name -> float.

Each task mirrors the original TimeChat evaluation script (commit c60b332) value for value:

* :func:`tvg_metrics` - ``metrics/tvg/eval_tvg.py`` (R1@0.3/0.5/0.7) plus mIoU;
* :func:`vhd_metrics` / :func:`vhd_results` - ``metrics/vhd/eval_vhd.py`` (HL-mAP, HL-Hit1, MR-*);
* :func:`dvc_metrics` - ``metrics/dvc/eval_dvc.py`` (CIDEr, METEOR, SODA_c, P/R/F1; needs Java).

Inputs are the parsed JSON of the original file formats (``load_*`` read them); where the
original crashes these raise :class:`MetricInputError`. A predicted value that cannot be scored (NaN,
infinity, not a number, start > end) is an :class:`InvalidPrediction`: scored as a miss and handed
to the caller's ``invalid=`` list. Command line: ``python -m timechat.metrics``.
"""

from timechat.metrics._common import InvalidPrediction, MetricInputError
from timechat.metrics._java import JavaSession, JavaUnavailableError, java_available
from timechat.metrics.dvc import dvc_metrics, load_dvc_gt, load_dvc_pred, split_from_gt_path
from timechat.metrics.tvg import load_tvg_gt, load_tvg_pred, tvg_iou, tvg_metrics
from timechat.metrics.vhd import load_vhd_gt, load_vhd_pred, vhd_metrics, vhd_results

__all__ = [
    "JavaSession",
    "InvalidPrediction",
    "JavaUnavailableError",
    "MetricInputError",
    "dvc_metrics",
    "java_available",
    "load_dvc_gt",
    "load_dvc_pred",
    "load_tvg_gt",
    "load_tvg_pred",
    "load_vhd_gt",
    "load_vhd_pred",
    "split_from_gt_path",
    "tvg_iou",
    "tvg_metrics",
    "vhd_metrics",
    "vhd_results",
]
