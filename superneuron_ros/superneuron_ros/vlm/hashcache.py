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

"""
A cache of weights hashes, so that a configure does not read the checkpoint a second time.

The full hash (:func:`superneuron_ros.vlm.checkpoint.weights_hash`, every byte of layers 0..L) is
computed once per set of files and stored in a cache folder, keyed by each safetensors file's
resolved path, size, modification time (nanoseconds), inode and device. A later configure on the
same files reuses it without reading a byte of weights. Any write to a file changes its
modification time, and a file replaced by another (copy, download, rename) changes its inode, so
the cached hash is recomputed; what it cannot see is a file rewritten in place with its old size
and its modification time deliberately set back (``touch -d``). Sampled hashes were rejected: two
checkpoints differing in one tensor would share them.

The folder is ``$SUPERNEURON_CACHE`` if set, else ``$XDG_CACHE_HOME/superneuron_ros`` (by default
``~/.cache/superneuron_ros``); one small JSON file per model folder under ``weights_hash/``. A
cache that cannot be read or written is ignored (the hash is then computed every time).
"""

import hashlib
import json
import logging
import os
from pathlib import Path
import time
from typing import Callable

from superneuron_ros.vlm.checkpoint import weights_hash

LOG = logging.getLogger(__name__)
CACHE_ENV = 'SUPERNEURON_CACHE'
FORMAT = 1


def cache_folder() -> Path:
    """Return the folder the hash cache lives in (not created)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base).expanduser() / 'superneuron_ros'


def file_signatures(folder: Path) -> list[dict]:
    """Return the identity of each safetensors file of `folder`: path, size, mtime, inode."""
    signatures = []
    for path in sorted(Path(folder).glob('*.safetensors')):
        stat = path.stat()
        signatures.append({'path': str(path.resolve()), 'size': stat.st_size,
                           'mtime_ns': stat.st_mtime_ns, 'inode': stat.st_ino,
                           'device': stat.st_dev})
    return signatures


def _cache_file(folder: Path, cache: Path) -> Path:
    key = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:24]
    return cache / 'weights_hash' / f'{key}.json'


def _read_entries(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        LOG.warning('ignoring the unreadable weights-hash cache %s (%s)', path, exc)
        return []
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        return []
    entries = data.get('entries')
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(
        entries, list) else []


def _write_entries(path: Path, folder: Path, entries: list[dict]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f'.{os.getpid()}.tmp')
        temporary.write_text(json.dumps({'format': FORMAT, 'folder': str(Path(folder).resolve()),
                                         'entries': entries}, indent=1) + '\n', encoding='utf-8')
        os.replace(temporary, path)
    except OSError as exc:
        LOG.warning('cannot write the weights-hash cache %s (%s); the next configure hashes '
                    'the weights again', path, exc)


def cached_weights_hash(folder: Path, exit_layer: int, cache: Path | None = None,
                        compute: Callable[[Path, int], str] | None = None) -> str:
    """
    Return the weights hash of `folder` at `exit_layer`, from the cache if the files are unchanged.

    `cache` is the cache folder (default :func:`cache_folder`); `compute` the hash function
    (default :func:`~superneuron_ros.vlm.checkpoint.weights_hash`).
    """
    folder = Path(folder)
    cache = cache_folder() if cache is None else Path(cache)
    signatures = file_signatures(folder)
    path = _cache_file(folder, cache)
    entries = _read_entries(path)
    for entry in entries:
        if entry.get('exit_layer') == exit_layer and entry.get('files') == signatures:
            digest = entry.get('hash')
            if isinstance(digest, str) and digest:
                LOG.info('weights hash of %s (layers 0..%d) from the cache %s', folder,
                         exit_layer, path)
                return digest
    start = time.perf_counter()
    digest = (compute or weights_hash)(folder, exit_layer)
    LOG.info('hashed the weights of %s (layers 0..%d) in %.1f s; cached in %s', folder,
             exit_layer, time.perf_counter() - start, path)
    # Keep entries of other exit layers that still describe these files; drop stale ones.
    kept = [entry for entry in entries
            if entry.get('files') == signatures and entry.get('exit_layer') != exit_layer]
    _write_entries(path, folder, kept + [{'exit_layer': exit_layer, 'files': signatures,
                                          'hash': digest}])
    return digest
