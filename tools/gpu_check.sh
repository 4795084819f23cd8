#!/usr/bin/env bash
# Copyright 2026 The superneuron_ros Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# The GPU check of issue 10, ready to run on a CUDA machine with Python 3.12, a CUDA PyTorch and
# transformers preinstalled, no network and no ROS. Extra wheels (bitsandbytes, ...) come from a
# folder. It runs the core's engine, shared-prefix, runtime and calibration tests on the GPU and
# `superneuron bench` on the demo, SmolVLM-256M and Qwen2-VL-2B presets in nf4 and in bf16, then
# writes one JSON and one markdown table (summary.json, summary.md in --out), all in about 8
# minutes. `--device cpu` is the small dry run the tests run (demo preset, a few tests).
#
#   tools/gpu_check.sh [--device cuda|cpu] [--wheels DIR] [--out DIR] [--python PY]
set -uo pipefail

device=cuda
wheels=
out=gpu_check_out
python=${PYTHON:-python3}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --wheels) wheels=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    -h|--help) sed -n '16,23p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $device != cuda && $device != cpu ]]; then
  echo "gpu_check.sh: --device must be cuda or cpu, got $device" >&2; exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$root/superneuron_ros${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n $wheels ]]; then  # no network: install the carried wheels beside the preinstalled ones
  "$python" -m pip install --quiet --no-index --no-deps --target "$out/site" "$wheels"/*.whl \
    || { echo "gpu_check.sh: cannot install the wheels of $wheels" >&2; exit 1; }
  export PYTHONPATH="$PYTHONPATH:$out/site"
fi
if [[ $device == cpu ]]; then
  export CUDA_VISIBLE_DEVICES=
else
  "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo 'gpu_check.sh: torch sees no CUDA device; use --device cpu for the dry run' >&2
         exit 1; }
fi
"$python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers",
transformers.__version__, "cuda", torch.cuda.is_available())'

failed=()
summary_args=()
start=$SECONDS
left() { echo $(( 480 - (SECONDS - start) )); }  # seconds of the 8-minute budget still left

run_tests() {  # name, timeout, pytest arguments...
  local name=$1 limit=$2; shift 2
  (( $(left) > 20 )) || { failed+=("tests $name (no time left)"); return; }
  (( limit > $(left) )) && limit=$(left)
  (cd "$root/superneuron_ros" && timeout "$limit" "$python" -m pytest -q -p no:cacheprovider \
    --junitxml "$out/tests_$name.xml" "$@") > "$out/tests_$name.log" 2>&1
  tail -n 3 "$out/tests_$name.log"
  summary_args+=(--tests "$name=$out/tests_$name.xml")
}

run_bench() {  # name, timeout, bench arguments...
  local name=$1 limit=$2; shift 2
  (( $(left) > 20 )) || { failed+=("$name (no time left)"); return; }
  (( limit > $(left) )) && limit=$(left)
  echo "bench $name (at most ${limit}s)"
  if timeout "$limit" "$python" -m superneuron_ros.cli.main bench --device "$device" \
      --cache-dir "$out/presets" --json "$out/bench_$name.json" "$@" \
      > "$out/bench_$name.log" 2>&1; then
    summary_args+=("$out/bench_$name.json")
  else
    failed+=("$name"); tail -n 5 "$out/bench_$name.log"
  fi
}

if [[ $device == cpu ]]; then
  run_tests core 120 test/test_prefix.py -k 'equals_unshared and llava and not onevision and none'
  quick=(--repeats 1 --sweep-repeats 1 --warmup 0 --layers none --sizes none --task-counts 1,2
         --calibration-images 4 --neurons 2 --max-new-tokens 1 --threads 1 --no-loaded)
  run_bench demo-none 120 --preset demo --quantization none "${quick[@]}"
  run_bench demo-nf4 120 --preset demo --quantization nf4 "${quick[@]}"
else
  run_tests core 150 test/test_engine.py test/test_prefix.py test/test_runtime.py
  run_tests calibration 60 test/test_calibrate.py
  gpu=(--repeats 10 --sweep-repeats 5 --warmup 2 --layers none --sizes none
       --calibration-images 8)
  for preset in demo smolvlm-256m qwen2-vl-2b; do
    run_bench "$preset-nf4" 110 --preset "$preset" --quantization nf4 "${gpu[@]}"
    run_bench "$preset-bf16" 80 --preset "$preset" --quantization none --dtype bfloat16 \
      "${gpu[@]}"
  done
fi

for name in "${failed[@]}"; do summary_args+=(--failed "$name"); done
"$python" -m superneuron_ros.lab.bench.summary --out "$out" "${summary_args[@]}"
echo "took $((SECONDS - start)) s; $out/summary.json and $out/summary.md"
[[ ${#failed[@]} -eq 0 ]]
