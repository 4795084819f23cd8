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
Task files (YAML) and labelled sets (JSONL): what is asked, which answers exist, and examples.

A task file::

    name: red_present                  # [a-z][a-z0-9_]*, used in ROS topic names
    question: Is there a red shape in the image?
    labels: [yes, no]                  # at least two, unique
    aliases:                           # optional: other phrases the model may answer with
      yes: [yeah, yep]
    description: optional free text

A labelled set holds one JSON object per line; ``image`` is relative to the JSONL file::

    {"image": "images/000001.png", "task": "red_present", "answer": "yes"}
    {"image": "images/02.png", "question": "Is there a red shape in the image?", "answer": "no"}
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import re
from typing import Any

import cv2
import numpy as np
from superneuron_ros.errors import DataError, ImageError
import yaml

_LOGGER = logging.getLogger(__name__)

_NAME_RE = re.compile(r'[a-z][a-z0-9_]*')
_NAME_MAX = 64
_MAX_ERRORS_LISTED = 10


def normalize_text(text: str) -> str:
    """Return text case-folded, with punctuation turned into spaces and whitespace collapsed."""
    return ' '.join(re.sub(r'[^\w\s]|_', ' ', text.casefold()).split())


class _StringLoader(yaml.SafeLoader):
    """A safe YAML loader that keeps every plain scalar a string (`yes` stays 'yes', `1` '1')."""

    yaml_implicit_resolvers: dict = {}


def _require_str(value: Any, field_name: str) -> str:
    """Return value stripped if it is a non-empty string, else raise DataError naming the field."""
    if isinstance(value, bool):
        raise DataError(
            f'{field_name} is a boolean ({value}); write it as a quoted string, e.g. "yes"')
    if not isinstance(value, str) or not value.strip():
        raise DataError(f'{field_name} must be a non-empty string, got {value!r}')
    return value.strip()


@dataclass(frozen=True)
class TaskSpec:
    """
    A categorical question with its allowed answers.

    ``aliases`` maps each label to the phrases accepted for it in free generated text; after
    construction every label is present and its own text is its first alias.
    """

    name: str
    question: str
    labels: tuple[str, ...]
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    description: str = ''

    def __post_init__(self) -> None:
        """Validate and normalise the fields; raise DataError naming the offending field."""
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name) \
                or len(self.name) > _NAME_MAX:
            raise DataError(
                f'name {self.name!r} is not a valid task name: use lower-case letters, digits '
                f'and underscores, starting with a letter, at most {_NAME_MAX} characters '
                '(it becomes part of ROS topic names), e.g. "red_present"')
        object.__setattr__(self, 'question', _require_str(self.question, 'question'))
        if isinstance(self.labels, (str, bytes)) or not isinstance(self.labels, Iterable):
            raise DataError(f'labels must be a list of strings, got {self.labels!r}')
        labels = tuple(_require_str(lab, f'labels[{i}]') for i, lab in enumerate(self.labels))
        if len(labels) < 2:
            raise DataError(
                f'labels of task {self.name!r} must hold at least two answers, got {labels!r}')
        folded = [normalize_text(lab) for lab in labels]
        for i, key in enumerate(folded):
            if not key:
                raise DataError(f'labels[{i}] {labels[i]!r} holds no letters or digits')
            if key in folded[:i]:
                raise DataError(
                    f'labels of task {self.name!r} must be unique (ignoring case and '
                    f'punctuation); {labels[i]!r} repeats {labels[folded.index(key)]!r}')
        object.__setattr__(self, 'labels', labels)
        object.__setattr__(self, 'aliases', self._normalised_aliases(labels))
        if self.description is None:
            object.__setattr__(self, 'description', '')
        elif not isinstance(self.description, str):
            raise DataError(f'description must be a string, got {self.description!r}')

    def _normalised_aliases(self, labels: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """Return label -> aliases with each label first; reject unknown and ambiguous ones."""
        if not isinstance(self.aliases, Mapping):
            raise DataError(f'aliases must be a mapping label -> list of phrases, '
                            f'got {self.aliases!r}')
        for key in self.aliases:
            if key not in labels:
                raise DataError(f'aliases names {key!r}, which is not a label; '
                                f'use one of {list(labels)}')
        owner: dict[str, str] = {}
        result: dict[str, tuple[str, ...]] = {}
        for label in labels:
            given = self.aliases.get(label, ())
            if isinstance(given, str):
                given = (given,)
            if not isinstance(given, Iterable):
                raise DataError(f'aliases[{label!r}] must be a list of phrases, got {given!r}')
            phrases = [label]
            for j, phrase in enumerate(given):
                phrase = _require_str(phrase, f'aliases[{label!r}][{j}]')
                if phrase not in phrases:
                    phrases.append(phrase)
            for phrase in phrases:
                key = normalize_text(phrase)
                if not key:
                    raise DataError(f'alias {phrase!r} of label {label!r} holds no letters '
                                    'or digits')
                if owner.get(key, label) != label:
                    raise DataError(f'alias {phrase!r} is given for both {owner[key]!r} and '
                                    f'{label!r}; each phrase may name one label only')
                owner[key] = label
            result[label] = tuple(phrases)
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'TaskSpec':
        """Build a task from a mapping with keys name, question, labels, aliases, description."""
        if not isinstance(data, Mapping):
            raise DataError(f'a task must be a mapping with name, question and labels, '
                            f'got {type(data).__name__}')
        known = {'name', 'question', 'labels', 'aliases', 'description'}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f'unknown task field(s) {unknown}; allowed: {sorted(known)}')
        missing = [key for key in ('name', 'question', 'labels') if key not in data]
        if missing:
            raise DataError(f'task is missing the field(s) {missing}')
        return cls(name=data['name'], question=data['question'], labels=data['labels'],
                   aliases=data.get('aliases') or {}, description=data.get('description') or '')

    def to_dict(self) -> dict[str, Any]:
        """Return a plain mapping that `from_dict` turns back into an equal task."""
        data: dict[str, Any] = {
            'name': self.name, 'question': self.question, 'labels': list(self.labels)}
        extra = {label: list(phrases[1:]) for label, phrases in self.aliases.items()
                 if len(phrases) > 1}
        if extra:
            data['aliases'] = extra
        if self.description:
            data['description'] = self.description
        return data

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> 'TaskSpec':
        """Read a task file; raise DataError saying which file and what is wrong."""
        path = Path(path)
        try:
            text = path.read_text(encoding='utf-8')
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f'cannot read task file {path}: {exc}; pass an existing UTF-8 '
                            'YAML file') from exc
        try:
            data = yaml.load(text, Loader=_StringLoader)
        except yaml.YAMLError as exc:
            raise DataError(f'task file {path} is not valid YAML: {exc}') from exc
        try:
            return cls.from_dict(data)
        except DataError as exc:
            raise DataError(f'task file {path}: {exc}') from exc

    def to_yaml(self, path: str | os.PathLike) -> None:
        """Write the task as a YAML file that `from_yaml` reads back."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=99),
            encoding='utf-8')

    def label_index(self, label: str) -> int:
        """Return the index of label (exact, else ignoring case); raise DataError if unknown."""
        if label in self.labels:
            return self.labels.index(label)
        if isinstance(label, str):
            key = normalize_text(label)
            for i, own in enumerate(self.labels):
                if normalize_text(own) == key:
                    return i
        raise DataError(f'{label!r} is not a label of task {self.name!r}; '
                        f'use one of {list(self.labels)}')

    @property
    def is_binary(self) -> bool:
        """Return whether the task has exactly two labels."""
        return len(self.labels) == 2

    @property
    def yes_index(self) -> int | None:
        """Return the index of 'yes' for a yes/no task, else None: the one rule, for all."""
        folded = [normalize_text(lab) for lab in self.labels]
        if sorted(folded) == ['no', 'yes']:
            return folded.index('yes')
        return None

    def match_answer(self, text: str) -> int | None:
        """
        Map free generated text to a label index, or None when it names no label.

        Case and punctuation are ignored. The whole answer must equal an alias, or begin with
        one as whole words ("Yes, there is." -> yes); the longest such alias wins.
        """
        answer = normalize_text(text or '')
        if not answer:
            return None
        best: tuple[int, int] | None = None  # (alias length, label index)
        for index, label in enumerate(self.labels):
            for phrase in self.aliases[label]:
                key = normalize_text(phrase)
                if answer == key or answer.startswith(key + ' '):
                    if best is None or len(key) > best[0]:
                        best = (len(key), index)
        return None if best is None else best[1]


@dataclass(frozen=True)
class Example:
    """One labelled image for one task."""

    image_path: Path
    task: str
    question: str
    label: str
    label_index: int


def _same_question(a: str, b: str) -> bool:
    """Return whether two questions are equal ignoring case and spacing."""
    return ' '.join(a.casefold().split()) == ' '.join(b.casefold().split())


def _parse_record(record: Any, where: str, root: Path, task: TaskSpec) -> Example | None:
    """Turn one JSON record into an Example, None when it belongs to another task."""
    if not isinstance(record, dict):
        raise DataError(f'{where}: expected a JSON object like {{"image": ..., "task": ..., '
                        f'"answer": ...}}, got {type(record).__name__}')
    if 'task' in record:
        if record['task'] != task.name:
            return None
    elif 'question' in record:
        if not isinstance(record['question'], str) \
                or not _same_question(record['question'], task.question):
            return None
    else:
        raise DataError(f'{where}: the record names neither "task" nor "question"; add '
                        f'"task": "{task.name}"')
    question = record.get('question', task.question)
    if not isinstance(question, str) or not question.strip():
        raise DataError(f'{where}: "question" must be a non-empty string')
    answer = record.get('answer')
    if not isinstance(answer, str):
        raise DataError(f'{where}: "answer" must be a string, one of {list(task.labels)}')
    try:
        index = task.label_index(answer)
    except DataError:
        raise DataError(f'{where}: answer {answer!r} is not a label of task {task.name!r}; '
                        f'allowed: {list(task.labels)}') from None
    image = record.get('image')
    if not isinstance(image, str) or not image:
        raise DataError(f'{where}: "image" must be a path relative to the JSONL file')
    image_path = (root / image).resolve()
    if not image_path.is_file():
        raise DataError(f'{where}: image file {image_path} not found; paths are relative to '
                        'the JSONL file')
    return Example(image_path=image_path, task=task.name, question=question.strip(),
                   label=task.labels[index], label_index=index)


def load_labelled_set(path: str | os.PathLike, task: TaskSpec) -> list[Example]:
    """
    Read the records of `task` from a JSONL labelled set and check them.

    Records of other tasks are skipped. Raises DataError, naming the file and line, for malformed
    JSON, unknown labels and missing images, and for a set that is empty or holds one class only.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding='utf-8').splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f'cannot read labelled set {path}: {exc}; pass an existing UTF-8 '
                        'JSONL file') from exc
    root = path.parent
    examples: list[Example] = []
    errors: list[str] = []
    other_tasks: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f'{path}:{number}'
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f'{where}: malformed JSON ({exc.msg} at column {exc.colno}); each '
                          'line must be one JSON object')
            continue
        try:
            example = _parse_record(record, where, root, task)
        except DataError as exc:
            errors.append(str(exc))
            continue
        if example is None:
            other_tasks.add(str(record.get('task', record.get('question'))))
        else:
            examples.append(example)
    if errors:
        more = len(errors) - _MAX_ERRORS_LISTED
        listed = '\n  '.join(errors[:_MAX_ERRORS_LISTED])
        tail = f'\n  ... and {more} more' if more > 0 else ''
        raise DataError(f'{len(errors)} bad record(s) in {path}:\n  {listed}{tail}')
    if not examples:
        hint = f'; it holds records of {sorted(other_tasks)}' if other_tasks else ''
        raise DataError(f'labelled set {path} has no records of task {task.name!r}{hint}; '
                        f'add records with "task": "{task.name}"')
    present = sorted({ex.label_index for ex in examples})
    if len(present) < 2:
        only = task.labels[present[0]]
        others = [lab for lab in task.labels if lab != only]
        raise DataError(f'labelled set {path} holds only the label {only!r} for task '
                        f'{task.name!r}; add examples of the other labels {others}')
    missing = [task.labels[i] for i in range(len(task.labels)) if i not in present]
    if missing:
        _LOGGER.warning('labelled set %s has no examples of %s for task %s', path, missing,
                        task.name)
    return examples


def write_labelled_set(path: str | os.PathLike,
                       records: Iterable[Mapping[str, Any] | Example]) -> int:
    """
    Write records (mappings or Examples) as JSONL and return how many lines were written.

    An Example's absolute image path is written relative to the JSONL file's folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.resolve()
    lines = []
    for record in records:
        if isinstance(record, Example):
            image = os.path.relpath(record.image_path, root)
            record = {'image': Path(image).as_posix(), 'task': record.task,
                      'question': record.question, 'answer': record.label}
        elif not isinstance(record, Mapping):
            raise DataError(f'a record must be a mapping or an Example, got '
                            f'{type(record).__name__}')
        lines.append(json.dumps(dict(record), ensure_ascii=False) + '\n')
    with open(path, 'w', encoding='utf-8', newline='\n') as stream:
        stream.writelines(lines)
    return len(lines)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an RGB array of shape (H, W, 3), dtype uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f'cannot read image {path}: the file is missing or not an image '
                         'OpenCV can decode; use PNG or JPEG files')
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))  # (H, W, 3) uint8
