#!/usr/bin/env bash
# Charades-STA temporal grounding with TimeChat-7B: inference (torchrun, NPROC processes) -> parsing -> metrics -> report.
# Usage: NPROC=8 scripts/eval_tvg.sh [key=value ...]   e.g. paths.data_root=/data eval.batch_size=8
# Config: eval_configs/timechat_tvg_charades.yaml (override with CFG=...).
set -euo pipefail
source "$(dirname "$0")/eval_common.sh"
run_eval "${CFG:-eval_configs/timechat_tvg_charades.yaml}" "$@"
