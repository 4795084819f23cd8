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


def jsonable(value: Any) -> Any:
    """Return `value` as strict JSON data: tuples as lists, NaN and infinities as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if hasattr(value, 'item') and callable(value.item):  # numpy and torch scalars
        return jsonable(value.item())
    return value


def write_json(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write `data` as indented strict JSON; return the path."""
    path = Path(path)
    path.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False) + '\n',
                    encoding='utf-8')
    return path
