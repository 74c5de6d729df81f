#!/usr/bin/env bash
# ir_d2: set up what is missing in the active Python environment, then run a job.
#   ./setup.sh main    the main job: train + evaluate the SGEM U-Net on the built-in data
#   ./setup.sh test    the tests (what CI runs)
#   ./setup.sh install set-up only
# Env: PYTHON (default python3), TORCH_SPEC, DETECTRON2_SRC (see scripts/bootstrap.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"
command -v "$py" >/dev/null 2>&1 || { echo "setup.sh: $py not found (set PYTHON)" >&2; exit 1; }
exec "$py" "$here/scripts/bootstrap.py" "$@"
