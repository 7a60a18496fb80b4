#!/usr/bin/env bash
# MiT-b4 (random init) training throughput on one GPU: fp32, bf16, channels-last, torch.compile,
# peak GPU memory, and the share of step time spent waiting for the 8-worker data loader.
# Finishes in under 8 minutes (gpu_bench.py skips what would not fit in --budget-s).
#
# The GPU machine has torch, transformers and accelerate but not datasets, evaluate or
# albumentations (nor their own dependencies below), so bring them as wheels. Once, on a machine
# with PyPI access, in the repository root (.whl/ is ignored by git):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform manylinux1_x86_64 -d .whl \
#     datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pyarrow==26.0.1 evaluate==0.4.6 \
#     albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 pydantic-core==2.50.5 \
#     annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 \
#     stringzilla==5.3.2 simsimd==6.5.16
#
# (If pip finds no wheel for one of them, add --platform manylinux_2_N_x86_64 for N = 24, 31,
# 34 or 35. pyarrow is ~40 MB of the 64 MiB a run may carry: leave it out if the machine's own
# pyarrow is >= 24, which datasets 5.2 needs. Not verified from the development machine, which
# had no network when this was written.) Then carry .whl with the run, e.g. from the device tool:
#   run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=540)
# Results: printed, and written to $OUT/gpu.json (or benchmarks/gpu-out/ without $OUT).
# Check the script anywhere first: python benchmarks/gpu_bench.py --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the package from this checkout
export PYTHONUNBUFFERED=1

python3 - <<'EOF'
import importlib, sys
missing = [m for m in ("datasets", "albumentations", "accelerate", "transformers", "torch")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing {missing}: download the wheels listed at the top of benchmarks/gpu.sh "
             "into .whl/ and carry .whl")
import torch, transformers
from transformers import SegformerImageProcessorPil  # noqa: F401  (needs transformers >= 5)
print("torch", torch.__version__, "transformers", transformers.__version__,
      "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

out_dir="${OUT:-benchmarks/gpu-out}"
mkdir -p "$out_dir"
# 440 s for the measurements, well inside 8 minutes with the install and imports above.
timeout 460 python3 benchmarks/gpu_bench.py --device cuda --preset mit-b4 --size 512 --batch 8 \
  --warmup 3 --steps 10 --loader-workers 8 --loader-steps 30 --budget-s 360 \
  --out "$out_dir/gpu.json" 2>&1 | tee "$out_dir/gpu.log"
