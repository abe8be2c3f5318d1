#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (see .library/device): versions, every
# method through the training loop in bf16 (and LoRA in fp16 and with checkpointing),
# then the per-method step cost beside peft. Needs .gpu/smollm2-tokenizer (carried):
#   mkdir -p .gpu/smollm2-tokenizer && cp ~/.cache/peftlab/models/SmolLM2-135M-Instruct/\
#       {config.json,generation_config.json,tokenizer.json,tokenizer_config.json} .gpu/smollm2-tokenizer/
set -uo pipefail
export PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
OUT=${OUT:-/tmp/peftlab-gpu-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import sys,torch,transformers,peft,accelerate; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)" | tee -a "$OUT/gpu.txt"
timeout "${SMOKE_S:-240}" python3 bench/gpu_smoke.py --assets .gpu/smollm2-tokenizer \
    --out "$OUT/gpu_smoke.json" --steps "${STEPS:-40}" 2>"$OUT/gpu_smoke.err"
echo "gpu_smoke rc=$?"
timeout "${COST_S:-200}" python3 bench/step_cost.py --device cuda --batch 8 --seq 512 \
    --steps 10 --warmup 3 > "$OUT/step_cost_gpu.md" 2>"$OUT/step_cost_gpu.err"
echo "step_cost rc=$?"
cat "$OUT/step_cost_gpu.md"
