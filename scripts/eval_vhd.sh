#!/usr/bin/env bash
# QVHighlights highlight detection with TimeChat-7B: inference (torchrun, NPROC processes) -> parsing -> metrics -> report.
# Usage: NPROC=8 scripts/eval_vhd.sh [key=value ...]   e.g. paths.data_root=/data eval.batch_size=8
# Config: eval_configs/timechat_vhd_qvhighlights.yaml (override with CFG=...).
set -euo pipefail
source "$(dirname "$0")/eval_common.sh"
run_eval "${CFG:-eval_configs/timechat_vhd_qvhighlights.yaml}" "$@"
