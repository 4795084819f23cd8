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

"""Tests of generated scenes: ground truth, rendering, balance, determinism and the CLI."""

from dataclasses import replace
import itertools
import json
import re

import numpy as np
import pytest
from superneuron_ros.cli.main import main
from superneuron_ros.errors import DataError, ImageError, UnknownTaskError
from superneuron_ros.lab.scene_datasets import write_dataset
from superneuron_ros.lab.scenes import (answer, BRIGHTNESS, COLOURS, phrasings, qa_pairs,
                                        random_scene, render, sample_scene_for, Scene, Shape,
                                        shift_scene, SHIFTS, TASKS)
from superneuron_ros.lab.zoo.vocab import english_words, PUNCTUATION
from superneuron_ros.method.tasks import load_image, load_labelled_set, TaskSpec

RED_SQUARE = Shape('square', 'red', 0.25, 0.5, 0.15)
BLUE_CIRCLE = Shape('circle', 'blue', 0.75, 0.5, 0.1)


def _scene(*shapes, noise=0.0, **kwargs) -> Scene:
    """Return a scene on a dark grey background."""
    return Scene(background=(50, 50, 50), shapes=shapes, noise=noise, **kwargs)


def _files(folder):
    """Return {relative path: bytes} of every file under folder."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob('*')) if p.is_file()}


def test_required_tasks_exist():
    """The scene tasks named in the design exist with their questions and labels."""
    for name in ('red_present', 'blue_present', 'shape_colour', 'red_left_of_blue',
                 'shape_count'):
        assert TASKS[name].name == name
    assert TASKS['red_present'].question == 'Is there a red shape in the image?'
    assert TASKS['shape_colour'].labels == tuple(COLOURS)
    assert TASKS['shape_count'].labels == ('1', '2', '3', '4')
    assert len(COLOURS) == 6


def test_ground_truth_on_hand_built_scenes():
    """A red square left of a smaller blue circle gets the right answers."""
    scene = _scene(RED_SQUARE, BLUE_CIRCLE)
    assert answer('red_left_of_blue', scene) == 'left'
    assert answer('red_present', scene) == 'yes'
    assert answer('blue_present', scene) == 'yes'
    assert answer('green_present', scene) == 'no'
    assert answer('shape_count', scene) == '2'
    assert answer('shape_colour', scene) == 'red'  # area 0.09 against 0.031
    swapped = _scene(replace(RED_SQUARE, x=0.8), replace(BLUE_CIRCLE, x=0.2))
    assert answer('red_left_of_blue', swapped) == 'right'


def test_ground_truth_says_when_a_question_does_not_apply():
    """Ambiguous or inapplicable questions answer None."""
    close = _scene(replace(RED_SQUARE, x=0.3, y=0.2), replace(BLUE_CIRCLE, x=0.35, y=0.8))
    assert answer('red_left_of_blue', close) is None
    assert answer('red_left_of_blue', _scene(RED_SQUARE)) is None
    two_reds = _scene(RED_SQUARE, BLUE_CIRCLE, Shape('circle', 'red', 0.8, 0.15, 0.08))
    assert answer('red_left_of_blue', two_reds) is None
    similar = _scene(RED_SQUARE, replace(BLUE_CIRCLE, size=0.16))  # areas 0.09 and 0.080
    assert answer('shape_colour', similar) is None
    assert answer('shape_colour', _scene(BLUE_CIRCLE)) == 'blue'
    assert answer('shape_count', _scene()) is None
    with pytest.raises(UnknownTaskError, match='red_present'):
        answer('no_such_task', _scene(RED_SQUARE))


def test_qa_pairs_cover_every_applicable_task():
    """qa_pairs holds every applicable question with its answer."""
    pairs = dict(qa_pairs(_scene(RED_SQUARE, BLUE_CIRCLE)))
    assert pairs['Is there a red shape in the image?'] == 'yes'
    for colour in ('green', 'yellow', 'purple', 'white'):
        assert pairs[f'Is there a {colour} shape in the image?'] == 'no'
    assert pairs['How many shapes are there?'] == '2'
    assert pairs[TASKS['red_left_of_blue'].question] == 'left'
    assert pairs[TASKS['shape_colour'].question] == 'red'
    assert len(pairs) == len(TASKS)
    single = dict(qa_pairs(_scene(BLUE_CIRCLE)))
    assert TASKS['red_left_of_blue'].question not in single
    assert TASKS['red_touching_edge'].question not in single  # no red shape
    assert len(single) == len(TASKS) - 2


def test_edge_and_left_half_ground_truth():
    """Touching the edge and the left half answer by geometry, None in the unclear band."""
    at_edge = _scene(replace(RED_SQUARE, x=0.15), BLUE_CIRCLE)
    assert answer('red_touching_edge', at_edge) == 'yes'
    assert answer('red_touching_edge', _scene(replace(RED_SQUARE, y=0.85))) == 'yes'
    assert answer('red_touching_edge', _scene(RED_SQUARE)) == 'no'  # 0.1 from the border
    assert answer('red_touching_edge', _scene(replace(RED_SQUARE, x=0.18))) is None  # 0.03
    two_reds = _scene(RED_SQUARE, Shape('circle', 'red', 0.8, 0.15, 0.08))
    assert answer('red_touching_edge', two_reds) is None
    assert answer('red_touching_edge', _scene(BLUE_CIRCLE)) is None
    assert answer('shape_in_left_half', _scene(RED_SQUARE, BLUE_CIRCLE)) == 'yes'
    assert answer('shape_in_left_half', _scene(BLUE_CIRCLE)) == 'no'  # box from x = 0.65
    assert answer('shape_in_left_half', _scene(replace(BLUE_CIRCLE, x=0.5))) is None


def test_every_task_has_seen_and_unseen_phrasings():
    """At least 3 training and 2 held-out wordings per task, disjoint, all in the vocabulary."""
    words = set(english_words()) | set(PUNCTUATION)
    for name, spec in TASKS.items():
        seen, unseen = phrasings(name, 'seen'), phrasings(name, 'unseen')
        assert len(set(seen)) == len(seen) >= 3 and len(set(unseen)) == len(unseen) >= 2
        assert not set(seen) & set(unseen), name
        assert seen[0] == spec.question
        for text in seen + unseen:
            pieces = re.findall(r'\w+|[^\w\s]', text)
            assert set(pieces) <= words, (text, set(pieces) - words)
            if name.endswith('_present'):
                assert name[:-len('_present')] in pieces
    with pytest.raises(DataError, match='unseen'):
        phrasings('red_present', 'test')


def test_brightness_and_shifted_conditions():
    """Brightness scales the rendered image; shifts lie outside the varied scenes' range."""
    scene = _scene(RED_SQUARE)
    bright, dim = render(scene, 64).astype(int), render(replace(scene, brightness=0.5), 64)
    assert np.abs(dim.astype(int) - np.rint(bright * 0.5)).max() <= 1
    assert shift_scene(scene, 'dim').brightness == 0.5
    assert shift_scene(scene, 'noisy').noise > 10 and shift_scene(scene, 'bright').brightness > 1
    rng = np.random.default_rng(3)
    scenes = [random_scene(rng, varied=True) for _ in range(200)]
    values = [s.brightness for s in scenes]
    assert BRIGHTNESS[0] <= min(values) < max(values) <= BRIGHTNESS[1]
    for kind, change in SHIFTS.items():
        for field, value in change.items():
            assert all(getattr(s, field) != value for s in scenes), kind
            if field == 'brightness':
                assert not BRIGHTNESS[0] <= value <= BRIGHTNESS[1]
    saturation = [max(s.background) - min(s.background) for s in scenes]
    assert max(saturation) > 100 and min(saturation) < 40  # coloured and grey backgrounds
    plain = [random_scene(rng) for _ in range(200)]  # as earlier versions drew them
    assert {s.brightness for s in plain} == {1.0} and max(s.noise for s in plain) <= 6
    assert max(max(s.background) - min(s.background) for s in plain) <= 24
    assert answer('red_present', sample_scene_for('red_present', 'yes', rng, varied=True)) == 'yes'
    with pytest.raises(DataError, match='brightness'):
        _scene(brightness=0.0)
    with pytest.raises(DataError, match='shift'):
        shift_scene(scene, 'rain')


def test_random_scene_in_a_horizontal_band():
    """x_range keeps every shape's box inside the band; a band too narrow is refused."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        for shape in random_scene(rng, x_range=(0.53, 1.0)).shapes:
            assert shape.x - shape.size >= 0.53 and shape.x + shape.size <= 1.0
    with pytest.raises(DataError, match='x_range'):
        random_scene(rng, x_range=(0.5, 0.6))


def test_invalid_shapes_and_scenes():
    """Out-of-range shape and scene fields raise DataError."""
    with pytest.raises(DataError, match='kind'):
        Shape('star', 'red', 0.5, 0.5, 0.1)
    with pytest.raises(DataError, match='colour'):
        Shape('circle', 'pink', 0.5, 0.5, 0.1)
    with pytest.raises(DataError, match='x='):
        Shape('circle', 'red', 1.5, 0.5, 0.1)
    with pytest.raises(DataError, match='size='):
        Shape('circle', 'red', 0.5, 0.5, 0.0)
    with pytest.raises(DataError, match='background'):
        Scene(background=(0, 0, 300), shapes=())
    with pytest.raises(DataError, match='noise'):
        Scene(background=(0, 0, 0), shapes=(), noise=-1.0)


@pytest.mark.parametrize('size', [(96, 96), (80, 120), (120, 80)])
def test_render_puts_each_colour_at_its_shape_centre(size):
    """Pixels at each shape centre have its colour, within the noise."""
    noise = 3.0
    triangle = Shape('triangle', 'yellow', 0.5, 0.2, 0.12)
    scene = _scene(RED_SQUARE, BLUE_CIRCLE, triangle, noise=noise, noise_seed=7)
    image = render(scene, size)
    height, width = size
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    for shape in scene.shapes:
        row, col = int(shape.y * height), int(shape.x * width)
        patch = image[row - 1:row + 2, col - 1:col + 2].reshape(-1, 3).astype(float)
        assert np.abs(patch - COLOURS[shape.colour]).max() <= 5 * noise, shape
        assert np.abs(patch.mean(axis=0) - COLOURS[shape.colour]).max() <= 2 * noise, shape
    corner = image[:4, :4].reshape(-1, 3).astype(float)
    assert np.abs(corner.mean(axis=0) - 50).max() <= 2 * noise
    assert 1.0 < image[:4, :4].astype(float).std() < 2 * noise


def test_render_is_anti_aliased_and_deterministic():
    """Edges blend colours; a scene renders to the same bytes."""
    scene = _scene(BLUE_CIRCLE)
    image = render(scene, 64)
    values = {tuple(pixel) for pixel in image.reshape(-1, 3)}
    assert (50, 50, 50) in values and COLOURS['blue'] in values
    assert len(values) > 5  # edge pixels blend background and shape
    noisy = replace(scene, noise=4.0, noise_seed=1)
    assert np.array_equal(render(noisy, 64), render(noisy, 64))
    assert not np.array_equal(render(noisy, 64), render(replace(noisy, noise_seed=2), 64))
    with pytest.raises(ImageError, match='size'):
        render(scene, 4)


def test_render_gradient_background():
    """A gradient runs from background at the top to background_end at the bottom."""
    scene = _scene(background_end=(100, 20, 0))
    image = render(scene, (50, 10)).astype(int)
    assert (image[0] == (50, 50, 50)).all() and (image[-1] == (100, 20, 0)).all()
    assert 60 < image[25, 0, 0] < 90


def test_random_scenes_are_valid_and_reproducible():
    """Random scenes vary, stay inside, never overlap and repeat for a seed."""
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng) for _ in range(300)]
    assert {len(scene.shapes) for scene in scenes} == {1, 2, 3, 4}
    assert {shape.kind for scene in scenes for shape in scene.shapes} == {
        'circle', 'square', 'triangle'}
    assert len({shape.size for scene in scenes for shape in scene.shapes}) > 100
    for scene in scenes:
        for colour in COLOURS.values():
            for bg in (scene.background, scene.background_end or scene.background):
                assert np.linalg.norm(np.subtract(bg, colour)) >= 80
        for shape in scene.shapes:
            assert shape.size <= shape.x <= 1 - shape.size
            assert shape.size <= shape.y <= 1 - shape.size
        for a, b in itertools.combinations(scene.shapes, 2):
            reach = a.size + b.size
            assert abs(a.x - b.x) > reach or abs(a.y - b.y) > reach, scene
    again = np.random.default_rng(0)
    assert [random_scene(again) for _ in range(300)] == scenes
    only_green = random_scene(np.random.default_rng(1), n_shapes=3, colours=['green'])
    assert [shape.colour for shape in only_green.shapes] == ['green'] * 3
    with pytest.raises(DataError, match='n_shapes'):
        random_scene(rng, n_shapes=5)
    with pytest.raises(DataError, match='colours'):
        random_scene(rng, colours=['pink'])


@pytest.mark.parametrize('task_name', list(TASKS))
def test_sample_scene_for_gives_the_asked_label(task_name):
    """Scenes sampled for a label have that label as ground truth."""
    rng = np.random.default_rng(5)
    for label in TASKS[task_name].labels:
        for _ in range(20):
            assert answer(task_name, sample_scene_for(task_name, label, rng)) == label


def test_sample_scene_for_rejects_unknown_names():
    """Unknown labels and tasks raise errors naming the valid ones."""
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match=r"\['yes', 'no'\]"):
        sample_scene_for('red_present', 'maybe', rng)
    with pytest.raises(UnknownTaskError, match='shape_count'):
        sample_scene_for('nothing', 'yes', rng)


def test_write_dataset_is_balanced_loadable_and_deterministic(tmp_path):
    """Datasets are balanced, load back, and repeat byte for byte."""
    tasks = ['red_present', 'shape_colour', 'red_left_of_blue']
    manifest = write_dataset(tmp_path / 'a', n=13, seed=4, size=(32, 40), tasks=tasks)
    write_dataset(tmp_path / 'b', n=13, seed=4, size=(32, 40), tasks=tasks)
    files = _files(tmp_path / 'a')
    assert files == _files(tmp_path / 'b')
    assert len([name for name in files if name.startswith('images/')]) == 13 * len(tasks)
    assert json.loads(files['manifest.json']) == manifest
    assert manifest['seed'] == 4 and manifest['size'] == [32, 40]
    for name in tasks:
        counts = manifest['tasks'][name]['counts']
        assert sum(counts.values()) == 13 and max(counts.values()) - min(counts.values()) <= 1
        task = TaskSpec.from_yaml(tmp_path / 'a' / 'tasks' / f'{name}.yaml')
        assert task == TASKS[name]
        examples = load_labelled_set(tmp_path / 'a' / f'{name}.jsonl', task)
        assert {lab: sum(ex.label == lab for ex in examples) for lab in task.labels} == counts
        assert load_image(examples[0].image_path).shape == (32, 40, 3)
    other = write_dataset(tmp_path / 'c', n=13, seed=5, size=(32, 40), tasks=tasks)
    assert other['tasks'] == manifest['tasks']  # same counts, other images
    assert _files(tmp_path / 'c')['images/red_present_000000.png'] != \
        files['images/red_present_000000.png']
    alone = tmp_path / 'alone'
    write_dataset(alone, n=13, seed=4, size=(32, 40), tasks=['red_left_of_blue'])
    assert (alone / 'red_left_of_blue.jsonl').read_bytes() == files['red_left_of_blue.jsonl']
    assert (alone / 'images' / 'red_left_of_blue_000012.png').read_bytes() == \
        files['images/red_left_of_blue_000012.png']


def test_write_dataset_rejects_bad_arguments(tmp_path):
    """Unknown tasks, n below 2 and negative seeds are refused."""
    with pytest.raises(UnknownTaskError, match='red_present'):
        write_dataset(tmp_path, n=4, seed=0, tasks=['nope'])
    with pytest.raises(DataError, match='n=1'):
        write_dataset(tmp_path, n=1, seed=0)
    with pytest.raises(DataError, match='seed'):
        write_dataset(tmp_path, n=4, seed=-1)


def test_cli_writes_a_small_dataset(tmp_path, capsys):
    """The scenes subcommand writes the files and prints a summary."""
    out = tmp_path / 'scenes'
    code = main(['scenes', '--out', str(out), '--n', '6', '--seed', '1', '--size', '48x64',
                 '--tasks', 'red_present,shape_count'])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'wrote 12 images (48x64, seed 1) for 2 task(s)' in printed
    assert 'red_present.jsonl' in printed and 'yes: 3, no: 3' in printed
    assert sorted(p.name for p in out.iterdir()) == [
        'images', 'manifest.json', 'red_present.jsonl', 'shape_count.jsonl', 'tasks']
    examples = load_labelled_set(out / 'shape_count.jsonl', TASKS['shape_count'])
    assert len(examples) == 6
    assert load_image(examples[0].image_path).shape == (48, 64, 3)
    assert main(['scenes', '--out', str(out), '--tasks', 'nope']) == 2
    plain, varied = tmp_path / 'plain', tmp_path / 'varied'
    for folder, extra in ((plain, []), (varied, ['--varied'])):
        assert main(['scenes', '--out', str(folder), '--n', '4', '--tasks', 'red_present']
                    + extra) == 0
    manifest = json.loads((varied / 'manifest.json').read_text())
    assert manifest['varied'] is True and manifest['about'].endswith('--varied')
    assert json.loads((plain / 'manifest.json').read_text())['varied'] is False
    different = [a != b for a, b in zip(_files(plain / 'images').values(),
                                        _files(varied / 'images').values())]
    assert len(different) == 4 and all(different)
