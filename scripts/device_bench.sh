#!/usr/bin/env bash
# Issue 7's GPU checks in one run, for a session whose task is lent a CUDA machine (the device tool): first
# tests/test_cuda.py (the GPU paths against the naive formulas on the CPU), then the GPU table: the train, search
# weight, search arch and eval steps at batches 16 and 64, with the naive formulas and bf16 autocast beside them
# (one process each). It exits with the tests' status. It uses that machine's python3 and PyTorch and installs
# nothing (neither spaCy nor easy-vqa is needed; pytest is). Tables in $OUT (the device tool's folder) or
# benchmarks/results/cuda.
#
#     bash scripts/device_bench.sh                                  # on the GPU machine
#     DEVICE=cpu bash scripts/device_bench.sh --batches 4 --reps 1 --variants   # a smoke run of this script here
#
# Extra arguments go to `python -m benchmarks` after the defaults, so they override them.
set -euo pipefail
cd "$(dirname "$0")/.."
device=${DEVICE:-cuda}
out=${OUT:-benchmarks/results/$device}
PY=${PYTHON:-python3}
if [ "$device" = cuda ]; then
    "$PY" -c "import torch; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name())" \
        2>/dev/null || { echo "error: no CUDA device here; run this on the GPU machine, or DEVICE=cpu" >&2; exit 2; }
fi
tests=0
MMNAS_TEST_DEVICE="$device" "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py || tests=$?
"$PY" -m benchmarks --device "$device" --threads 8 --batches 16 64 --reps 10 --variants naive bf16 \
    --skip ceilings loader itm --out "$out" "$@"
exit $tests
