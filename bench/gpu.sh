#!/usr/bin/env bash
# The one prepared GPU benchmark (bench/gpu_bench.py): peftlab beside Trainer + peft
# (+ bitsandbytes) on a Mistral-7B-shaped model with random bf16 weights (LoRA, QLoRA,
# DoRA; batch 4 x <=1024 Alpaca records, no gradient checkpointing) and one epoch of the
# embedded SmolLM2-135M's shape (batch 8 x 512), each side of each case in its own
# process, all within 8 minutes from a fresh GPU machine.
#
# 1. Here, once, in the repository root (needs the embedded model and pip's network):
#        bash bench/gpu.sh --prepare
#    fills .gpu/ (git ignores it, ~48 MB): the embedded model's config and tokenizer,
#    alpaca_en_demo.json (from shared/data; without it the bundled records stand in),
#    and wheels of bitsandbytes and liger-kernel (the GPU image has neither).
# 2. On the GPU machine (the device tool's run, carry [".gpu"], timeout_s 600):
#        bash bench/gpu.sh
#    $OUT gets results.json, gpu_bench.md (the BENCHMARKS.md table), log.txt (every
#    process's stderr tail) and gpu.txt (nvidia-smi, pip).
# On a CPU, every case with tiny shapes (a minute or two on an idle machine):
#        TINY=1 bash bench/gpu.sh         # or: python bench/gpu_bench.py --tiny
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
    set -e
    mkdir -p .gpu/smollm2-tokenizer .gpu/wheels
    grep -qx '/.gpu/' .gitignore || echo '/.gpu/' >> .gitignore
    src=$(PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 $PY -c \
        'from peftlab.model.load import resolve_model_path; print(resolve_model_path(None))')
    cp "$src"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json} \
        .gpu/smollm2-tokenizer/
    for d in shared/data ../shared/data ../../shared/data; do
        if [ -f "$d/alpaca_en_demo.json" ]; then cp "$d/alpaca_en_demo.json" .gpu/; break; fi
    done
    [ -f .gpu/alpaca_en_demo.json ] || echo "alpaca_en_demo.json not found: bundled data stand in"
    rm -f .gpu/wheels/*.whl
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/wheels \
        "bitsandbytes==${BNB_VERSION:-0.50.2}" "liger-kernel==${LIGER_VERSION:-0.8.5}"
    du -sh .gpu
    echo 'now, on the GPU machine: bash bench/gpu.sh  (carry [".gpu"], timeout_s 600)'
    exit 0
fi

export PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
export TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/peftlab-gpu-out}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true; } \
    > "$OUT/gpu.txt"
if [ "${TINY:-0}" = "1" ]; then
    :  # a CPU run uses what this machine has installed
elif ls .gpu/wheels/*.whl > /dev/null 2>&1; then
    # --no-deps: torch, numpy and triton stay the image's own
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-bench-site .gpu/wheels/*.whl >> "$OUT/gpu.txt" 2>&1 \
        && export PYTHONPATH=$PYTHONPATH:/tmp/gpu-bench-site
else
    echo "no wheels in .gpu/wheels: the QLoRA peer needs bitsandbytes" | tee -a "$OUT/gpu.txt"
fi
args=(--out "$OUT")
total=${TOTAL_S:-470}  # the cases' budget (gpu_bench.BUDGET_S, 450 s) and the start above
[ "${TINY:-0}" = "1" ] && { args+=(--tiny); total=${TOTAL_S:-3600}; }
[ -n "${BUDGET_S:-}" ] && args+=(--budget "$BUDGET_S")
[ -n "${CASES:-}" ] && args+=(--only "$CASES")  # e.g. CASES=lora7b,epoch
timeout "$total" $PY bench/gpu_bench.py "${args[@]}"
echo "gpu_bench rc=$?"
