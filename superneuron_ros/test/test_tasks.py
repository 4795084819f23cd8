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

"""Tests of task files, labelled sets and image loading."""

import json

import cv2
import numpy as np
import pytest
from superneuron_ros.errors import DataError, ImageError
from superneuron_ros.method.tasks import (Example, load_image, load_labelled_set, TaskSpec,
                                          write_labelled_set)


def _yes_no(**kwargs) -> TaskSpec:
    """Return a yes/no task, with fields overridden by kwargs."""
    fields = {'name': 'red_present', 'question': 'Is there a red shape in the image?',
              'labels': ('yes', 'no'), 'aliases': {'yes': ('yeah',), 'no': ['nope']}}
    fields.update(kwargs)
    return TaskSpec(**fields)


def test_task_normalises_labels_and_aliases():
    """Labels become a tuple, every label is its own first alias."""
    task = _yes_no(labels=['yes', 'no'])
    assert task.labels == ('yes', 'no')
    assert task.aliases == {'yes': ('yes', 'yeah'), 'no': ('no', 'nope')}
    assert task.is_binary and task.yes_index == 0
    assert _yes_no(labels=('no', 'yes')).yes_index == 1
    lr = TaskSpec('side', 'Left or right?', ('left', 'right'))
    assert lr.is_binary and lr.yes_index is None
    colours = TaskSpec('colour', 'Which colour?', ('red', 'green', 'blue'))
    assert not colours.is_binary and colours.yes_index is None
    assert colours.aliases['green'] == ('green',)


@pytest.mark.parametrize('kwargs, field', [
    ({'name': 'Red'}, 'name'),
    ({'name': '1red'}, 'name'),
    ({'name': 'red-present'}, 'name'),
    ({'name': ''}, 'name'),
    ({'question': '  '}, 'question'),
    ({'labels': ('yes',)}, 'at least two'),
    ({'labels': 'yes'}, 'labels'),
    ({'labels': ('yes', 'Yes')}, 'unique'),
    ({'labels': ('yes', '')}, r'labels\[1\]'),
    ({'labels': (True, False)}, r'labels\[0\] is a boolean'),
    ({'aliases': {'maybe': ('perhaps',)}}, 'not a label'),
    ({'aliases': {'yes': ('ok',), 'no': ('OK!',)}}, 'both'),
    ({'aliases': {'yes': (3,)}}, r"aliases\['yes'\]\[0\]"),
    ({'description': 5}, 'description'),
])
def test_task_validation_names_the_field(kwargs, field):
    """Each invalid field raises DataError naming it."""
    with pytest.raises(DataError, match=field):
        _yes_no(**kwargs)


def test_task_dict_and_yaml_round_trip(tmp_path):
    """to_dict/from_dict and to_yaml/from_yaml give back an equal task."""
    task = _yes_no(description='a test task')
    assert TaskSpec.from_dict(task.to_dict()) == task
    path = tmp_path / 'tasks' / 'red.yaml'
    task.to_yaml(path)
    assert TaskSpec.from_yaml(path) == task


def test_yaml_keeps_plain_scalars_as_strings(tmp_path):
    """Unquoted yes/no/on and numbers in a task file stay strings."""
    path = tmp_path / 'task.yaml'
    path.write_text('name: present\nquestion: Any?\nlabels: [yes, no]\naliases:\n  yes: [on]\n')
    task = TaskSpec.from_yaml(path)
    assert task.labels == ('yes', 'no')
    assert task.aliases['yes'] == ('yes', 'on')
    path.write_text('name: count\nquestion: How many?\nlabels: [1, 2, 3]\naliases:\n  1: [one]\n')
    task = TaskSpec.from_yaml(path)
    assert task.labels == ('1', '2', '3')
    assert task.match_answer('One.') == 0


@pytest.mark.parametrize('text, message', [
    ('name: a\nquestion: [unclosed\n', 'not valid YAML'),
    ('name: a\nlabels: [x, y]\n', r"missing the field\(s\) \['question'\]"),
    ('name: a\nquestion: q\nlabels: [x, y]\ncolour: red\n', 'unknown task field'),
    ('- just a list\n', 'must be a mapping'),
])
def test_bad_task_files(tmp_path, text, message):
    """Broken task files raise DataError naming the file and the problem."""
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        TaskSpec.from_yaml(path)
    assert str(path) in str(info.value)


def test_missing_task_file(tmp_path):
    """A missing task file raises DataError."""
    with pytest.raises(DataError, match='cannot read task file'):
        TaskSpec.from_yaml(tmp_path / 'absent.yaml')


def test_label_index():
    """Labels resolve exactly or ignoring case; unknown ones list the valid labels."""
    task = _yes_no()
    assert task.label_index('no') == 1
    assert task.label_index('Yes') == 0
    with pytest.raises(DataError, match=r"\['yes', 'no'\]"):
        task.label_index('maybe')


@pytest.mark.parametrize('text, expected', [
    ('yes', 0), ('Yes.', 0), ('  YES, there is a red shape', 0), ('No!', 1), ('nope', 1),
    ('yeah', 0), ('no-one', 1), ('maybe', None), ('', None), ('yesterday', None),
    ('I think yes', None), ('?!', None),
])
def test_match_answer_yes_no(text, expected):
    """Free text maps to yes/no by whole answer or leading alias."""
    assert _yes_no().match_answer(text) == expected


def test_match_answer_prefers_the_longest_alias():
    """The longest leading alias decides between overlapping ones."""
    task = TaskSpec('place', 'Where?', ('on', 'on top', 'under'),
                    aliases={'under': ('below', 'on the floor')})
    assert task.match_answer('On top of the box.') == 1
    assert task.match_answer('on the floor') == 2
    assert task.match_answer('On.') == 0
    assert task.match_answer('Below it') == 2


@pytest.fixture
def dataset(tmp_path):
    """Write two images and return (folder, task)."""
    (tmp_path / 'images').mkdir()
    for name in ('a.png', 'b.png'):
        cv2.imwrite(str(tmp_path / 'images' / name), np.zeros((4, 4, 3), np.uint8))
    return tmp_path, _yes_no()


def _write_lines(path, lines):
    """Write raw lines to a JSONL file."""
    path.write_text(''.join(line + '\n' for line in lines), encoding='utf-8')
    return path


def test_load_labelled_set(dataset):
    """Records of the task, by name or question, load; others are skipped."""
    folder, task = dataset
    path = _write_lines(folder / 'set.jsonl', [
        json.dumps({'image': 'images/a.png', 'task': 'red_present', 'answer': 'yes'}),
        '',
        json.dumps({'image': 'images/b.png', 'question': 'is there a RED shape in the  image?',
                    'answer': 'No'}),
        json.dumps({'image': 'images/zzz.png', 'task': 'other_task', 'answer': 'whatever'}),
        json.dumps({'image': 'images/b.png', 'question': 'Something else?', 'answer': '?'}),
    ])
    examples = load_labelled_set(path, task)
    assert examples == [
        Example((folder / 'images' / 'a.png').resolve(), 'red_present', task.question, 'yes', 0),
        Example((folder / 'images' / 'b.png').resolve(), 'red_present',
                'is there a RED shape in the  image?', 'no', 1),
    ]
    assert all(ex.image_path.is_absolute() for ex in examples)


def _good(image='images/a.png', answer='yes'):
    """Return one valid record line."""
    return json.dumps({'image': image, 'task': 'red_present', 'answer': answer})


@pytest.mark.parametrize('lines, message', [
    ([_good(), '{"image": "images/b.png", "task": ', _good(answer='no')],
     r':2: malformed JSON'),
    ([_good(), '["not", "an", "object"]', _good(answer='no')], r':2: expected a JSON object'),
    ([_good(), _good(answer='maybe'), _good(answer='no')],
     r":2: answer 'maybe' is not a label .*allowed: \['yes', 'no'\]"),
    ([_good(), _good(answer='no'), _good(image='images/missing.png')],
     r':3: image file .*missing\.png not found'),
    ([_good(), json.dumps({'image': 'images/a.png', 'answer': 'no'})],
     r':2: the record names neither'),
    ([_good(), json.dumps({'image': 'images/a.png', 'task': 'red_present', 'answer': 1})],
     r':2: "answer" must be a string'),
    ([json.dumps({'image': 'images/a.png', 'task': 'blue_present', 'answer': 'yes'})],
     r"no records of task 'red_present'; it holds records of \['blue_present'\]"),
    ([], 'no records of task'),
    ([_good(), _good(image='images/b.png')], r"holds only the label 'yes'.*\['no'\]"),
])
def test_load_labelled_set_errors(dataset, lines, message):
    """Each kind of bad record or set raises DataError with file and line."""
    folder, task = dataset
    path = _write_lines(folder / 'set.jsonl', lines)
    with pytest.raises(DataError, match=message) as info:
        load_labelled_set(path, task)
    assert str(path) in str(info.value)


def test_load_labelled_set_lists_every_bad_line(dataset):
    """Errors of many lines are reported together, the first ten listed."""
    folder, task = dataset
    path = _write_lines(folder / 'set.jsonl', [_good(answer='maybe')] * 12 + [_good('x.png')])
    with pytest.raises(DataError) as info:
        load_labelled_set(path, task)
    text = str(info.value)
    assert text.startswith(f'13 bad record(s) in {path}')
    assert f'{path}:10:' in text and f'{path}:11:' not in text
    assert 'and 3 more' in text


def test_load_labelled_set_missing_file(tmp_path):
    """A missing JSONL file raises DataError."""
    with pytest.raises(DataError, match='cannot read labelled set'):
        load_labelled_set(tmp_path / 'absent.jsonl', _yes_no())


def test_write_labelled_set_round_trip(dataset):
    """Examples and plain records written as JSONL load back unchanged."""
    folder, task = dataset
    examples = [
        Example((folder / 'images' / 'a.png').resolve(), task.name, task.question, 'yes', 0),
        Example((folder / 'images' / 'b.png').resolve(), task.name, task.question, 'no', 1),
    ]
    path = folder / 'sub' / 'set.jsonl'
    assert write_labelled_set(path, examples) == 2
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {'image': '../images/a.png', 'task': 'red_present',
                     'question': task.question, 'answer': 'yes'}
    assert load_labelled_set(path, task) == examples
    plain = folder / 'plain.jsonl'
    write_labelled_set(plain, [{'image': 'images/a.png', 'task': 'red_present', 'answer': 'no'},
                               {'image': 'images/b.png', 'task': 'red_present', 'answer': 'yes'}])
    assert [ex.label for ex in load_labelled_set(plain, task)] == ['no', 'yes']
    with pytest.raises(DataError, match='mapping or an Example'):
        write_labelled_set(plain, ['not a record'])


def test_load_image_returns_rgb(tmp_path):
    """Images load as (H, W, 3) uint8 in RGB order, grey ones too."""
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    bgr[0, 0] = (10, 20, 30)
    path = tmp_path / 'red.png'
    assert cv2.imwrite(str(path), bgr)
    image = load_image(path)
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8
    assert tuple(image[2, 3]) == (200, 0, 0)
    assert tuple(image[0, 0]) == (30, 20, 10)
    grey = tmp_path / 'grey.png'
    cv2.imwrite(str(grey), np.full((3, 4), 77, np.uint8))
    assert load_image(grey).shape == (3, 4, 3)


def test_load_image_errors(tmp_path):
    """Missing and undecodable files raise ImageError."""
    with pytest.raises(ImageError, match='cannot read image'):
        load_image(tmp_path / 'absent.png')
    fake = tmp_path / 'fake.png'
    fake.write_text('not a png')
    with pytest.raises(ImageError, match='PNG or JPEG'):
        load_image(fake)
