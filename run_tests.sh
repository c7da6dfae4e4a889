#!/usr/bin/env bash
# Runs the test suite. On a fresh clone it first creates .venv and installs the package with its test extras
# (nnU-Net, PyTorch, onnx/onnxruntime). Arguments go to pytest as they are; without a test path pytest runs
# tests/ (pytest.ini's testpaths). Skip reasons are printed (-rs).
#   bash run_tests.sh                                    # everything (what CI runs)
#   bash run_tests.sh -m "not slow"                      # the fast tier
#   bash run_tests.sh tests/test_cli.py::test_version    # one test
set -euo pipefail
cd "$(dirname "$0")"
source ./scripts/ensure_venv.sh
exec python -m pytest -rs "$@"
