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

"""Strict JSON files: reports, evaluations and benchmark results written the same way."""

import json
import math
from pathlib import Path
from typing import Any, Mapping

from superneuron_ros.errors import DataError


def jsonable(value: Any, strict: bool = False, where: str = 'value') -> Any:
    """
    Return `value` as strict JSON data: tuples as lists, NaN and infinities as None.

    Numpy and torch scalars and arrays are unpacked. With ``strict`` (profiles), a key that is not
    a string or a value JSON cannot hold raises DataError naming where it is; otherwise keys are
    turned into strings and other values are passed through for json to judge.
    """
    if hasattr(value, 'tolist') and callable(value.tolist) and getattr(value, 'ndim', 0):
        value = value.tolist()  # numpy and torch arrays
    elif hasattr(value, 'item') and callable(value.item):  # numpy and torch scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Mapping):
        if strict and not all(isinstance(key, str) for key in value):
            raise DataError(f'{where} keys must be strings, got {list(value)}')
        return {str(key): jsonable(item, strict, f'{where}.{key}') for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item, strict, f'{where}[{i}]') for i, item in enumerate(value)]
    if strict:
        raise DataError(f'{where} holds a {type(value).__name__}, which JSON cannot store; use '
                        'numbers, strings, lists and dicts')
    return value


def write_json(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write `data` as indented strict JSON; return the path."""
    path = Path(path)
    path.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False) + '\n',
                    encoding='utf-8')
    return path
