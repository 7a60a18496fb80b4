#!/usr/bin/env bash
# On one GPU, in this order:
# 1. configs/b4-gpu.yaml's training step, through run_finetune.py: 40 steps of MiT-b4 at 512,
#    bf16 (if the GPU has it), batch 8 x 2 accumulation, 8 workers, on synthetic photos; the
#    Trainer's memory metrics (train_mem_gpu_*) and samples/s land in $OUT/b4-gpu/.
# 2. MiT-b4 (random init) training throughput: fp32, bf16, torch.compile, peak
#    GPU memory, and the share of step time spent waiting for the 8-worker data loader.
# Finishes in under 9 minutes (gpu_bench.py skips what would not fit in --budget-s).
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
#   run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=600)
# Results: printed, and written to $OUT/gpu.json and $OUT/b4-gpu/ (or benchmarks/gpu-out/
# without $OUT).
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

python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "no CUDA GPU here: nothing to measure (check the scripts with gpu_bench.py --dry-run)"
  exit 1
}

out_dir="${OUT:-benchmarks/gpu-out}"
mkdir -p "$out_dir/b4-gpu"
work="$(mktemp -d)"
# 1. The config's step. The GPU machine has no Hub access, so the b4 encoder starts from random
# weights of the same size (--from_scratch_preset mit-b4) with the config's recipe flags kept:
# the same network, memory and step time as the pretrained checkpoint.
bf16="$(python3 -c "import torch; print(str(torch.cuda.is_bf16_supported()).lower())")"
PEAK_JSON="$out_dir/b4-gpu/memory.json" timeout 240 python3 benchmarks/gpu_config_step.py \
  configs/b4-gpu.yaml --from_scratch_preset mit-b4 \
  --head_lr_multiplier 10 --no_weight_decay_for norm --bf16 "$bf16" \
  --data_root "$work/photos" --synthetic_samples 400 --output_dir "$work/run" \
  --max_steps 40 --eval_strategy no --save_strategy no --load_best_model_at_end false \
  --logging_steps 10 --disable_tqdm true \
  2>&1 | tee "$out_dir/b4-gpu/train.log" || echo "configs/b4-gpu.yaml step failed (see train.log)"
cp "$work/run/train_results.json" "$work/run/all_results.json" "$out_dir/b4-gpu/" 2>/dev/null || true

# 2. The throughput measurements, in the time left after the install and step 1.
timeout 330 python3 benchmarks/gpu_bench.py --device cuda --preset mit-b4 --size 512 --batch 8 \
  --warmup 3 --steps 10 --loader-workers 8 --loader-steps 30 --budget-s 240 \
  --out "$out_dir/gpu.json" 2>&1 | tee "$out_dir/gpu.log"
