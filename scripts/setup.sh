#!/usr/bin/env bash
# Creates .venv (if missing) and installs everything mmnas needs. Idempotent.
# TORCH_SPEC overrides the torch requirement, e.g. TORCH_SPEC="torch==2.5.1" for a CUDA machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/python -m pip install -q -r requirements.txt
