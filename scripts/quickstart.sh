#!/usr/bin/env bash
# The embedded default, end to end on a CPU with no downloads:
#   install into .venv -> generate the synthetic time-sensitive videos -> train the tiny TimeChat
#   from scratch -> evaluate temporal grounding on the held-out test split (report + plots).
# Usage: bash scripts/quickstart.sh [extra train overrides, e.g. run.seed=7 or run.max_steps=100]
#
# Training and evaluation run as TIMECHAT_NPROC (default 2) processes of one thread each (torchrun,
# gloo; 16 samples per step in all), on any machine: the figures do not depend on its core count.
# A process per core is faster here than one process with two threads (README, "The embedded default learns").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev]"
export HF_HUB_OFFLINE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
NPROC="${TIMECHAT_NPROC:-2}"
if [ $((16 % NPROC)) -ne 0 ]; then
  echo "TIMECHAT_NPROC must divide the batch of 16, got $NPROC" >&2
  exit 2
fi
launch() {  # launch SCRIPT ARGS...: one process, or NPROC under torchrun
  if [ "$NPROC" -gt 1 ]; then
    torchrun --standalone --nproc_per_node="$NPROC" "$@"
  else
    python "$@"
  fi
}
# (train.py generates data/synthetic and the frozen-ViT feature cache on first use: run.synthetic_data and
#  run.build_feature_cache in the config)
launch train.py --cfg-path train_configs/tiny_synthetic.yaml run.batch_size=$((16 / NPROC)) "$@"
launch evaluate.py --cfg-path eval_configs/tiny_synthetic.yaml
echo "report: outputs/tiny_synthetic/eval/tvg_test/report.md"
python scripts/synthetic_baselines.py --data data/synthetic --out outputs/tiny_synthetic/baselines.json \
  --predictions outputs/tiny_synthetic/eval/tvg_test/fmt_synthetic_test_f16_result.json
