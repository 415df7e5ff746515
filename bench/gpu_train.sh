#!/usr/bin/env bash
# Train the flagship on a bare GPU machine from a checkout of this repo, so the GPU's time
# goes to training, not preparing:
#
#   bench/gpu_train.sh PACK OUT MINUTES [CONFIG]
#
# PACK: the training data in one file, made beforehand on any machine with
#       `fillgap data pack --out PACK` (train + val photos; see DATA.md);
# OUT: the run folder (checkpoints, metrics, grids); an existing OUT/last.pt is resumed;
# MINUTES: wall-time budget of the training itself; CONFIG: default configs/ffc-small-v3-gpu.yaml.
#
# Install: the machine's own PyTorch (CUDA) is used as it is; fillgap runs from src/ and
# only the pure-Python packages it lacks are installed, from wheels in gpu-wheels/ when the
# machine has no package registry (fetch them beforehand with
# `pip download -d gpu-wheels --only-binary :all: --python-version 3.12 --platform manylinux2014_x86_64 pydantic typer`).
set -euo pipefail
cd "$(dirname "$0")/.."
pack=$1 out=$2 minutes=$3 config=${4:-configs/ffc-small-v3-gpu.yaml}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

missing=$($PY - <<'PY'
import importlib.util
need = {"pydantic": "pydantic", "yaml": "pyyaml", "typer": "typer", "safetensors": "safetensors",
        "cv2": "opencv-python-headless", "skimage": "scikit-image", "tqdm": "tqdm", "PIL": "pillow"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  echo "installing: $missing"
  if [ -d gpu-wheels ]; then
    $PY -m pip install -q --no-index --find-links gpu-wheels $missing
  else
    $PY -m pip install -q $missing
  fi
fi
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('GPU:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"

resume=()
[ -f "$out/last.pt" ] && resume=(--resume)
set -x
$PY -m fillgap train --config "$config" --data "pack:$pack" --out "$out" --max-minutes "$minutes" "${resume[@]}"
