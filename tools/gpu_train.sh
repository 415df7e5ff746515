#!/usr/bin/env bash
# Train the flagship on a bare GPU machine from a checkout of this repo, so the GPU's time
# goes to training, not preparing:
#
#   tools/gpu_train.sh PACK RUN MINUTES [CONFIG]
#
# PACK: the training data in one file (train + val photos; `make gpu-kit` writes .gpu/train-pack.npz);
# RUN: the run folder (checkpoints, metrics, grids); an existing RUN/last.pt is resumed;
# MINUTES: wall-time budget of the training itself; CONFIG: default configs/ffc-small-v3-gpu.yaml.
# Environment: COLLECT=DIR copies what to keep (last.pt, metrics.jsonl, config.yaml, train.log,
# loss-curve.png, the newest grid: 6 files) into DIR when the script ends (also on a failure or
# SIGTERM), for a machine that sends back only a few files; DEVICE=cpu rehearses the whole script without a GPU; PYTHON picks the interpreter.
#
# Install: the machine's own PyTorch (CUDA) is used as it is; fillgap runs from src/ and only
# the packages it lacks are installed, each from the wheels in .gpu/wheels (`make gpu-kit` fetches
# pydantic's for Python 3.11 and 3.12) when they are there, else from the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
pack=$1 run=$2 minutes=$3 config=${4:-configs/ffc-small-v3-gpu.yaml}
PY=${PYTHON:-python3} device=${DEVICE:-cuda} wheels=${FILLGAP_WHEELS:-.gpu/wheels}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

missing=$($PY - <<'PY'
import importlib.util
need = {"pydantic": "pydantic", "yaml": "pyyaml", "typer": "typer", "safetensors": "safetensors",
        "cv2": "opencv-python-headless", "skimage": "scikit-image", "tqdm": "tqdm", "PIL": "pillow",
        "matplotlib": "matplotlib"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  echo "installing: $missing"
  # each package from the kit's wheels when it has them (pydantic), else from the registry
  for pkg in $missing; do
    if [ -d "$wheels" ] && $PY -m pip install -q --no-index --find-links "$wheels" "$pkg" 2>/dev/null; then
      continue
    fi
    $PY -m pip install -q "$pkg" || { echo "gpu_train.sh: cannot install $pkg (not in $wheels, no registry?)" >&2; exit 1; }
  done
fi
if [ "$device" = cuda ]; then
  $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('GPU:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
fi

collect() {  # also when the run fails or is stopped (TERM): a checkpoint written so far still comes back
  [ -n "${COLLECT:-}" ] || return 0
  mkdir -p "$COLLECT"
  for f in last.pt metrics.jsonl config.yaml train.log loss-curve.png; do
    if [ -f "$run/$f" ]; then cp "$run/$f" "$COLLECT/"; fi
  done
  newest=$(ls -t "$run"/grid-*.png 2>/dev/null | head -1 || true)
  if [ -n "$newest" ]; then cp "$newest" "$COLLECT/"; fi
  ls -la "$COLLECT"
}
trap collect EXIT
trap 'exit 143' TERM INT  # so that EXIT's collect runs when the lease ends the script

resume=()
[ -f "$run/last.pt" ] && resume=(--resume)
mkdir -p "$run"
$PY -m fillgap train --config "$config" --data "pack:$pack" --out "$run" --max-minutes "$minutes" \
  --device "$device" "${resume[@]}" 2>&1 | tee -a "$run/train.log"
