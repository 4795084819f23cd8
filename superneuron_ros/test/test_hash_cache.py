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

"""The weights-hash cache: a second configure on the same files reads no weights to hash them."""

import builtins
import os
from pathlib import Path
import shutil

import pytest
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm import checkpoint
from superneuron_ros.vlm.config import LoadConfig
from superneuron_ros.vlm.hashcache import CACHE_ENV, cache_folder, cached_weights_hash

pytest_plugins = ['calibrated_fixture']  # the calibrated_red_present fixture


@pytest.fixture
def reads(monkeypatch):
    """Count the files the checkpoint module opens (headers and weights) while hashing."""
    opened: list[str] = []

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, 'open', counting_open, raising=False)
    return opened


@pytest.fixture(scope='module')
def model(tmp_path_factory) -> Path:
    """Return a tiny LLaVA folder."""
    return build_model_folder(tmp_path_factory.mktemp('hash') / 'llava', 'llava', seed=0)


def test_second_hash_reads_nothing_and_agrees(tmp_path, model, reads):
    """The cached hash is the full hash; the second call opens no checkpoint file."""
    first = cached_weights_hash(model, 1, cache=tmp_path)
    assert first == checkpoint.weights_hash(model, 1)
    assert reads  # the first call (and the check above) read the files
    reads.clear()
    assert cached_weights_hash(model, 1, cache=tmp_path) == first
    assert reads == []
    assert cached_weights_hash(model, 2, cache=tmp_path) != first  # another exit layer
    reads.clear()
    assert cached_weights_hash(model, 1, cache=tmp_path) == first  # both layers kept
    assert cached_weights_hash(model, 2, cache=tmp_path) == checkpoint.weights_hash(model, 2)


def test_a_changed_file_is_hashed_again(tmp_path, model, reads):
    """A new modification time or a replaced file (new inode) invalidates the cached hash."""
    copy = shutil.copytree(model, tmp_path / 'copy')
    cache = tmp_path / 'cache'
    digest = cached_weights_hash(copy, 1, cache=cache)
    weights = next(copy.glob('*.safetensors'))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    reads.clear()
    assert cached_weights_hash(copy, 1, cache=cache) == digest
    assert reads  # hashed again: the bytes are the same, so is the hash
    replacement = weights.with_suffix('.new')
    shutil.copy2(weights, replacement)  # same size and mtime, another inode
    os.replace(replacement, weights)
    reads.clear()
    cached_weights_hash(copy, 1, cache=cache)
    assert reads


def test_an_unreadable_or_unwritable_cache_only_costs_time(tmp_path, model, reads):
    """A corrupt cache file is ignored and rewritten; a cache that cannot be written is skipped."""
    cache = tmp_path / 'cache'
    digest = cached_weights_hash(model, 1, cache=cache)
    (cache_file,) = (cache / 'weights_hash').glob('*.json')
    cache_file.write_text('{not json')
    assert cached_weights_hash(model, 1, cache=cache) == digest
    reads.clear()
    assert cached_weights_hash(model, 1, cache=cache) == digest
    assert reads == []
    blocked = tmp_path / 'blocked'
    blocked.write_text('a file where the cache folder should be')
    assert cached_weights_hash(model, 1, cache=blocked) == digest


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    """SUPERNEURON_CACHE wins, then XDG_CACHE_HOME."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'mine'))
    assert cache_folder() == tmp_path / 'mine'
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert cache_folder() == tmp_path / 'xdg' / 'superneuron_ros'


def test_second_configure_reads_no_weights_to_hash(tmp_path, monkeypatch, reads,
                                                   calibrated_red_present):
    """Runtime.load twice on the same files: only the first hashes the checkpoint."""
    setup = calibrated_red_present
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'cache'))
    config = LoadConfig(str(setup.model_dir), quantization='none', device='cpu')
    Runtime.load(config, [setup.profile_dir]).close()
    assert any(path.endswith('.safetensors') for path in reads)
    reads.clear()
    Runtime.load(config, [setup.profile_dir]).close()
    assert reads == []
