#!/usr/bin/env bash
# YouCook2 dense video captioning with TimeChat-7B: inference (torchrun, NPROC processes) -> parsing -> metrics -> report.
# Usage: NPROC=8 scripts/eval_dvc.sh [key=value ...]   e.g. paths.data_root=/data eval.batch_size=8
# Config: eval_configs/timechat_dvc_youcook2.yaml (override with CFG=...).
set -euo pipefail
source "$(dirname "$0")/eval_common.sh"
run_eval "${CFG:-eval_configs/timechat_dvc_youcook2.yaml}" "$@"
