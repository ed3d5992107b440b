#!/usr/bin/env bash
# The model benchmarks on one CUDA GPU (sized for an H100, under 8 minutes):
#   bash benchmarks/gpu.sh            -> $OUT/cuda.json, or benchmarks/results/cuda.json when OUT is unset
#   bash benchmarks/gpu.sh --sections train,sample   (extra arguments go to python -m benchmarks.run)
# Expects python3 with torch + CUDA. Wheels in .whl/ beside the repository root (see benchmarks/README.md)
# are installed into /tmp/site, only those whose distribution the image lacks (no network needed).
set -euo pipefail
cd "$(dirname "$0")/.."

if compgen -G ".whl/*.whl" >/dev/null; then
  need=()
  for w in .whl/*.whl; do
    name=$(basename "$w" | cut -d- -f1)
    python3 -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$name" 2>/dev/null || need+=("$w")
  done
  if ((${#need[@]})); then
    echo "installing into /tmp/site: ${need[*]##*/}"
    python3 -m pip install -q --no-index --no-deps --target /tmp/site "${need[@]}"
  fi
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# sitsr_core and benchmarks from this tree (no install needed)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)"

out=${OUT:+$OUT/cuda.json}
out=${out:-benchmarks/results/cuda.json}
# each section rewrites the JSON, so a run stopped by the timeout keeps the sections it finished
# the full-grid ensemble (the 10 s target) first: a run cut short still answers the main question
args=("$@")
((${#args[@]})) || args=(--sections sample_full,train,sample,scaling,data)
timeout --signal=INT --kill-after=10 465 python3 -m benchmarks.run --device cuda --out "$out" "${args[@]}"
echo "wrote $out"
