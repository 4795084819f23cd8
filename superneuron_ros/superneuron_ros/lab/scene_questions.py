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
The wordings of the scene questions: several seen in training, others kept apart for evaluation.

Every task has at least three training phrasings (the first is the task's canonical question, the
one its TaskSpec and the demo profiles use) and at least two held-out ('unseen') phrasings that
training never shows, to measure whether the model answers paraphrases. Presence phrasings are
templates with ``{colour}``. Every word is in the zoo tokenizer's vocabulary, so no phrasing
falls apart into letters.
"""

from superneuron_ros.errors import DataError

SPLITS = ('seen', 'unseen')

_PRESENCE = {
    'seen': ('Is there a {colour} shape in the image?', 'Do you see a {colour} shape?',
             'Is any shape {colour}?', 'Is there a {colour} object in the picture?'),
    'unseen': ('Can you see a {colour} thing?', 'Is a {colour} shape visible in the scene?'),
}

PHRASINGS: dict[str, dict[str, tuple[str, ...]]] = {
    'shape_colour': {
        'seen': ('What colour is the largest shape?', 'What is the colour of the largest shape?',
                 'Which colour does the largest shape have?',
                 'Tell me the colour of the largest object.'),
        'unseen': ('What color is the largest object in the picture?',
                   'Which colour is the largest thing?'),
    },
    'red_left_of_blue': {
        'seen': ('Is the red shape to the left or to the right of the blue shape?',
                 'Is the red shape left or right of the blue shape?',
                 'Where is the red shape, left or right of the blue one?',
                 'Is the red object on the left or on the right of the blue object?'),
        'unseen': ('Is the red thing to the left or right of the blue thing?',
                   'Which side of the blue shape is the red shape on, left or right?'),
    },
    'shape_count': {
        'seen': ('How many shapes are there?', 'How many shapes are in the image?',
                 'Count the shapes.', 'What is the number of shapes?'),
        'unseen': ('How many objects can you see?', 'How many things are in the picture?'),
    },
    'red_touching_edge': {
        'seen': ('Is the red shape touching the edge of the image?',
                 'Is the red shape touching the edge?',
                 'Is the red shape at the edge of the image?',
                 'Is the red object touching the side of the picture?'),
        'unseen': ('Is the red thing touching the edge of the picture?',
                   'Is the red shape on the edge of the frame?'),
    },
    'shape_in_left_half': {
        'seen': ('Is there a shape in the left half of the image?',
                 'Is any shape in the left half?', 'Do you see a shape in the left half?',
                 'Is there an object in the left half of the picture?'),
        'unseen': ('Is anything in the left half of the image?',
                   'Can you see an object on the left half of the picture?'),
    },
}


def presence_phrasings(colour: str, split: str) -> tuple[str, ...]:
    """Return the phrasings of 'is there a `colour` shape' for a split ('seen' or 'unseen')."""
    _check_split(split)
    return tuple(template.format(colour=colour) for template in _PRESENCE[split])


def fixed_phrasings(task_name: str, split: str) -> tuple[str, ...]:
    """Return the phrasings of a task that is not a presence task; KeyError if it has none."""
    _check_split(split)
    return PHRASINGS[task_name][split]


def _check_split(split: str) -> None:
    """Raise DataError unless `split` is one of SPLITS."""
    if split not in SPLITS:
        raise DataError(f'phrasing split {split!r} is not one of {list(SPLITS)}')
