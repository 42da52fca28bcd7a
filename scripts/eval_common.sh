#!/usr/bin/env bash
# Shared body of scripts/eval_<task>.sh: torchrun -> evaluate.py (inference, parsing, metrics,
# report) with one eval config; extra arguments are key=value overrides passed through.
#   NPROC   processes (default 1; one GPU each, gloo on CPU)
#   CFG     the eval config (set by the calling script)
# Usage (from a task script): source "$(dirname "$0")/eval_common.sh"; run_eval "$CFG" "$@"
set -euo pipefail

run_eval() {
  local cfg="$1"; shift
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$root"
  local nproc="${NPROC:-1}"
  local python="${PYTHON:-python}"
  "$python" -m torch.distributed.run --standalone --nproc_per_node="$nproc" evaluate.py --cfg-path "$cfg" "$@"
  local out
  out="$("$python" -c 'import sys; from timechat.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).output_dir)' "$cfg" "$@")"
  echo "report: $out/report.md (json: $out/report.json, predictions: $out/fmt_*.json)"
}
