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

"""The calibration memory probe: the store is calibration's own, each storage in its process."""

from superneuron_ros.lab.bench.calibration_memory import format_results, run_storages


def test_the_probe_builds_the_store_at_the_given_width_in_each_storage():
    """Store bytes follow examples x layers x width x bytes; peaks never decrease by phase."""
    results = run_storages(examples=40, layers=2, hidden=64, intermediate=96)
    assert [r['storage'] for r in results] == ['float32', 'float16']
    for r, width in zip(results, (4, 2)):
        assert r['store_bytes'] == 40 * 2 * (64 + 96) * width
        assert r['rss_start'] <= r['peak_collect'] <= r['peak_rank'] <= r['peak_total']
    table = format_results(results)
    assert 'hidden 64 + intermediate 96' in table and len(table.splitlines()) == 4
