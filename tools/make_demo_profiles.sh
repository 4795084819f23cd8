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
# Rebuild the embedded demo's profiles from the shipped demo model (`make demo-profiles`):
# generated labelled scenes, then one `superneuron calibrate` per task, nf4 as the node runs it:
# repeated 5-fold cross-validation (2 repeats) of the vote and the linear readout at every
# layer, with m up to 64 (the 6-label colour task still gains from 32 to 64 scalars).
# The prompt is the bare question, as the demo model was trained on it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$root/superneuron_ros/superneuron_ros/data"
tasks=${DEMO_TASKS:-red_present,blue_present,shape_colour,shape_count,red_left_of_blue,shape_in_left_half}
n=${DEMO_N:-600}
# DEMO_BASELINE=0 skips the full model's own answer in each report (`superneuron eval` gives it
# on fresh scenes); the shipped profiles were made so on a busy 2-core machine.
# DEMO_CEILING=0 skips the ceiling rows (the linear readout over all 704 scalars of a layer):
# on a busy shared CPU they take most of the search time.
baseline=()
[[ "${DEMO_BASELINE:-1}" == 0 ]] && baseline=(--no-baseline)
# DEMO_SIZE: image side (96, the 'demo' preset's); DEMO_VARIED=0 calibrates on plain scenes
# instead of the varied ones train-demo trains on.
size=${DEMO_SIZE:-96}
varied=()
[[ "${DEMO_VARIED:-1}" == 1 ]] && varied=(--varied)
[[ "${DEMO_CEILING:-1}" == 0 ]] && baseline+=(--no-ceiling)
scenes_dir=$(mktemp -d)
trap 'rm -rf "$scenes_dir"' EXIT

superneuron scenes --out "$scenes_dir" --n "$n" --seed 7 --size "$size" --tasks "$tasks" \
    "${varied[@]}"
for task in ${tasks//,/ }; do
    superneuron calibrate --model "$data/demo_model" --task "$scenes_dir/tasks/$task.yaml" \
        --data "$scenes_dir/$task.jsonl" --out "$data/demo_profiles/$task" --force \
        --quantization nf4 --prompt-template '{question}' --seed 0 --no-progress \
        --sizes 8,16,32,64 --batch-size 16 "${baseline[@]}"
done
