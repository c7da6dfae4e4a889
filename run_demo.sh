#!/usr/bin/env bash
# The main job: generates a small synthetic 3D dataset and runs nnU-Net's real plan/preprocess ->
# train (LightMedSeg, short schedule) -> predict -> evaluate on the CPU, printing the Dice reached.
# On a fresh clone it first creates .venv and installs the package. Extra arguments go to `lightmedseg demo`.
set -euo pipefail
cd "$(dirname "$0")"
source ./scripts/ensure_venv.sh
exec lightmedseg demo "$@"
