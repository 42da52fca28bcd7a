#!/usr/bin/env bash
# Shared body of scripts/eval_<task>.sh: preflight (every path the config names, one table) ->
# torchrun -> evaluate.py (inference, parsing, metrics, report) with one eval config; extra
# arguments are key=value overrides passed through.
#   NPROC   processes (default 1; one GPU each, gloo on CPU)
#   CFG     the eval config (set by the calling script)
#   PYTHON  the interpreter; default: the active venv's python ($VIRTUAL_ENV), else the project's
#           .venv/bin/python, else python3 on PATH (the choice is printed on stderr)
# Usage (from a task script): source "$(dirname "$0")/eval_common.sh"; run_eval "$CFG" "$@"
set -euo pipefail

# The python to run with, chosen as PYTHON > active venv > the project's .venv > python3; says which on stderr.
find_python() {
  local root="$1"
  if [ -n "${PYTHON:-}" ]; then
    echo "using PYTHON=$PYTHON" >&2
    echo "$PYTHON"
  elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    echo "using the active venv's python: $VIRTUAL_ENV/bin/python" >&2
    echo "$VIRTUAL_ENV/bin/python"
  elif [ -x "$root/.venv/bin/python" ]; then
    echo "using the project's .venv python: $root/.venv/bin/python" >&2
    echo "$root/.venv/bin/python"
  else
    local found
    found="$(command -v python3 || command -v python || true)"
    if [ -z "$found" ]; then
      echo "no python found: activate a venv, create $root/.venv (bash scripts/quickstart.sh) or set PYTHON=..." >&2
      return 1
    fi
    echo "no active venv and no $root/.venv: using $found from PATH (set PYTHON=... to choose)" >&2
    echo "$found"
  fi
}

run_eval() {
  local cfg="$1"; shift
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$root"
  local nproc="${NPROC:-1}"
  local python
  python="$(find_python "$root")"
  # find_spec looks torch up without importing it (the preflight below imports it once).
  if ! "$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)" 2>/dev/null; then
    echo "$python cannot import torch: install the project into it (pip install -e .) or set PYTHON=..." >&2
    return 1
  fi
  # Everything the config names, checked once before torchrun starts (one table, no traceback).
  "$python" -m timechat.check --kind eval --cfg-path "$cfg" "$@" >/dev/null || return $?
  "$python" -m torch.distributed.run --standalone --nproc_per_node="$nproc" evaluate.py --cfg-path "$cfg" "$@"
  local out
  out="$("$python" -c 'import sys; from timechat.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).output_dir)' "$cfg" "$@")"
  echo "report: $out/report.md (json: $out/report.json, per sample: $out/samples.csv, timelines: $out/timelines.html)"
}
