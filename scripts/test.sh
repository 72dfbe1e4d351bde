#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One intra-op thread per process: these small networks gain little from more, and lose up to 50x when
# other work shares the CPU (idle-spinning OpenMP threads). Override with OMP_NUM_THREADS=2.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest -q "$@"
