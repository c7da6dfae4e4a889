#!/usr/bin/env bash
# Runs the whole test suite. On a fresh clone it first creates .venv and installs the package with its
# test extras (nnU-Net, PyTorch, onnx/onnxruntime). Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")"
source ./scripts/ensure_venv.sh
exec python -m pytest tests "$@"
