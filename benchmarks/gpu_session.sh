#!/usr/bin/env bash
# One GPU session for a lent machine that has no internet and cannot receive the packaged models (their weights,
# 87 MB and 98 MB, exceed what travels with the working tree):
#   1. install what is missing from wheels in ./.whl/ (bitsandbytes, trl, datasets and its small dependencies);
#   2. build stand-in models OF THE REAL SHAPE with RANDOM weights from the real configs and tokenizers carried in
#      ./.gpu/: MiniLM-L6 (BERT 384 x 6) and SmolLM2-135M-Instruct (Llama 576 x 30). Timings are those of the real
#      models; accuracies are meaningless and are not reported;
#   3. benchmarks/gpu_check.sh: MiniLM full fine-tune (bf16), one QLoRA iteration (4-bit NF4 + LoRA) of the SmolLM2-
#      shaped decoder classifier, a launch through accelerate;
#   4. the demo config's PPO stage (configs/demo.yaml sizes: 12 updates of 4 rollouts, response_length 24) with the
#      SmolLM2-shaped policy and value model and the MiniLM-shaped reward; prints seconds per PPO update.
# Data: ./.gpu/data (a copy of ../shared/data made for the transfer, never committed).
#   bash benchmarks/gpu_session.sh      # writes everything under $OUT
set -uo pipefail
PPO_EXTRA="${PPO_EXTRA:-}"  # extra overrides for the PPO stage (a local dry run uses --ppo.total_episodes 4)
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_session_out}"; WORK="${WORK:-/tmp/gpu_session_work}"; PY="${PYTHON:-python3}"
mkdir -p "$OUT" "$WORK"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TRL_EXPERIMENTAL_SILENCE=1 PIP_BREAK_SYSTEM_PACKAGES=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export SILR_DATA_DIR="$PWD/.gpu/data"

for wheel in .whl/*.whl; do  # only distributions the machine lacks, one at a time: what it has stays as it is
  dist=$(basename "$wheel" | cut -d- -f1)
  "$PY" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$dist" 2>/dev/null && continue
  timeout 60 "$PY" -m pip install -q --no-index --no-deps "$wheel" >> "$OUT/pip.log" 2>&1 && echo "installed $dist" \
    || echo "not installed: $wheel"
done

timeout 120 "$PY" - "$WORK" > "$OUT/standins.log" 2>&1 <<'EOF'
import sys
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
work = Path(sys.argv[1])
torch.manual_seed(0)
for name, kind in (("minilm", "cls"), ("smollm2", "lm")):
    source, target = Path(".gpu") / name, work / name
    config = AutoConfig.from_pretrained(source)
    if kind == "cls":
        config.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    print(name, type(model).__name__, sum(p.numel() for p in model.parameters()) / 1e6, "M parameters (random)")
EOF
cat "$OUT/standins.log"

# ---- refine fine-tuning checks (budget 240 s) ----
STANDINS="$WORK"
if [ -z "${SKIP_REFINE:-}" ]; then  # SKIP_REFINE=1: only the PPO stage
PYTHON="$PY" OUT="$OUT/gpu_check" WORK="$STANDINS/gpu_check" BUDGET_S=240 SILR_MINILM="$STANDINS/minilm" \
  SILR_DECODER="$STANDINS/smollm2" bash benchmarks/gpu_check.sh 2>&1 | tail -25
fi

# ---- the demo config's PPO stage ----
RUN="$WORK/ppo_run"
T0=$(date +%s)
timeout 150 "$PY" -m align ppo --config configs/demo.yaml --output_dir "$RUN" --variants "[ours_50]" \
  --num_threads null --policy.model_name_or_path "$WORK/smollm2" \
  --ppo.reward_models "{ours_50: $WORK/minilm}" --ppo.reward_higher_is_safer true --ppo.normalize_rewards false $PPO_EXTRA > "$OUT/ppo.log" 2>&1
echo "PPO exit $? after $(( $(date +%s) - T0 ))s"
grep -E "INFO align|rror" "$OUT/ppo.log" | tail -8
cp "$RUN"/ppo/ours_50/seed_0/{train.json,metrics.csv} "$OUT/" 2>/dev/null
"$PY" -c "
import json; t = json.load(open('$OUT/train.json'))
print(f\"GPU PPO: {t['updates']} updates of {t['episodes'] // t['updates']} rollouts in {t['seconds']:.1f}s = \"
      f\"{t['seconds_per_update']:.2f}s per update ({t['distributed_type']})\")" 2>&1
nvidia-smi --query-gpu=name,memory.used --format=csv >> "$OUT/ppo.log" 2>&1
