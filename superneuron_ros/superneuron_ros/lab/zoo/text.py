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
Per-family special tokens and chat templates, and the tokenizer built from them.

Each family gets the same word-piece English vocabulary (see :mod:`vocab`) with its own special
tokens, image placeholder tokens and a Jinja chat template in the style of the real checkpoints
(``llava-hf/llava-1.5-7b-hf``, ``llava-hf/llava-onevision-qwen2-0.5b-ov-hf``,
``Qwen/Qwen2-VL-2B-Instruct``, ``Qwen/Qwen3-VL-2B-Instruct``,
``HuggingFaceTB/SmolVLM-256M-Instruct``). With ``add_generation_prompt=True`` the rendered
prompt ends where the assistant's answer starts, so its last position predicts the answer's first
token.
"""

from dataclasses import dataclass

from superneuron_ros.errors import UnsupportedArchitectureError
from superneuron_ros.lab.zoo.vocab import build_word_piece
from transformers import PreTrainedTokenizerFast

FAMILIES: tuple[str, ...] = (
    'llava', 'llava_onevision', 'qwen2_vl', 'qwen2_5_vl', 'qwen3_vl', 'smolvlm')

LLAVA_TEMPLATE = (
    '{% for message in messages %}'
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endif %}"
    '{% endfor %}'
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")

ONEVISION_TEMPLATE = (
    '{% for message in messages %}'
    "{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ '\n' + message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    '{% endfor %}'
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

_QWEN_MESSAGES = (
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    '<|vision_start|><|image_pad|><|vision_end|>'
    "{% elif content['type'] == 'video' or 'video' in content %}"
    '<|vision_start|><|video_pad|><|vision_end|>'
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    '{% endfor %}<|im_end|>\n{% endif %}'
    '{% endfor %}'
    '{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}')

QWEN2_TEMPLATE = (
    '{% for message in messages %}'
    "{% if loop.first and message['role'] != 'system' %}"
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}'
    + _QWEN_MESSAGES)

QWEN3_TEMPLATE = '{% for message in messages %}' + _QWEN_MESSAGES

SMOLVLM_TEMPLATE = (
    '<|im_start|>{% for message in messages %}'
    "{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}"
    "{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}"
    '{% endfor %}{% endif %}<end_of_utterance>\n'
    '{% endfor %}'
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")

PROCESSOR_CLASSES = {
    'llava': 'LlavaProcessor', 'llava_onevision': 'LlavaOnevisionProcessor',
    'qwen2_vl': 'Qwen2VLProcessor', 'qwen2_5_vl': 'Qwen2_5_VLProcessor',
    'qwen3_vl': 'Qwen3VLProcessor', 'smolvlm': 'SmolVLMProcessor'}
SMOLVLM_MAX_GRID = 6  # row/col tokens <row_1_col_1> .. <row_6_col_6>, as in the real tokenizer


@dataclass(frozen=True)
class TextSpec:
    """The tokens and chat template of one family's tokenizer."""

    special_tokens: tuple[str, ...]  # all special tokens, in id order (ids 0..)
    named: dict[str, str]  # bos_token / eos_token / pad_token / unk_token -> token
    model_specific: dict[str, str]  # e.g. image_token -> '<image>' (tokenizer attributes)
    role_words: tuple[str, ...]  # words the chat template writes
    chat_template: str
    add_bos: bool = False  # the tokenizer prepends bos when encoding with special tokens
    padding_side: str = 'left'


_QWEN_SPECIALS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>',
                  '<|object_ref_end|>', '<|box_start|>', '<|box_end|>', '<|quad_start|>',
                  '<|quad_end|>', '<|vision_start|>', '<|vision_end|>', '<|vision_pad|>',
                  '<|image_pad|>', '<|video_pad|>', '<unk>')
_QWEN_SPECIFIC = {'image_token': '<|image_pad|>', 'video_token': '<|video_pad|>',
                  'vision_start_token': '<|vision_start|>', 'vision_end_token': '<|vision_end|>'}
_QWEN_ROLES = ('system', 'user', 'assistant', 'You', 'helpful')
_SMOL_GRID = tuple(f'<row_{r}_col_{c}>' for r in range(1, SMOLVLM_MAX_GRID + 1)
                   for c in range(1, SMOLVLM_MAX_GRID + 1))

TEXT_SPECS: dict[str, TextSpec] = {
    'llava': TextSpec(
        special_tokens=('<unk>', '<s>', '</s>', '<pad>', '<image>'),
        named={'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>',
               'pad_token': '<pad>'},
        model_specific={'image_token': '<image>'},
        role_words=('USER', 'ASSISTANT', 'SYSTEM'), chat_template=LLAVA_TEMPLATE, add_bos=True),
    'llava_onevision': TextSpec(
        special_tokens=('<|endoftext|>', '<|im_start|>', '<|im_end|>', '<image>', '<video>',
                        '<unk>'),
        named={'eos_token': '<|im_end|>', 'pad_token': '<|endoftext|>', 'unk_token': '<unk>'},
        model_specific={'image_token': '<image>', 'video_token': '<video>'},
        role_words=_QWEN_ROLES, chat_template=ONEVISION_TEMPLATE),
    'qwen2_vl': TextSpec(
        special_tokens=_QWEN_SPECIALS,
        named={'eos_token': '<|im_end|>', 'pad_token': '<|endoftext|>', 'unk_token': '<unk>'},
        model_specific=_QWEN_SPECIFIC, role_words=_QWEN_ROLES, chat_template=QWEN2_TEMPLATE),
    'qwen2_5_vl': TextSpec(
        special_tokens=_QWEN_SPECIALS,
        named={'eos_token': '<|im_end|>', 'pad_token': '<|endoftext|>', 'unk_token': '<unk>'},
        model_specific=_QWEN_SPECIFIC, role_words=_QWEN_ROLES, chat_template=QWEN2_TEMPLATE),
    'qwen3_vl': TextSpec(
        special_tokens=_QWEN_SPECIALS,
        named={'eos_token': '<|im_end|>', 'pad_token': '<|endoftext|>', 'unk_token': '<unk>'},
        model_specific=_QWEN_SPECIFIC, role_words=_QWEN_ROLES, chat_template=QWEN3_TEMPLATE),
    'smolvlm': TextSpec(
        special_tokens=('<|endoftext|>', '<|im_start|>', '<|im_end|>',
                        '<fake_token_around_image>', '<image>', '<end_of_utterance>',
                        '<global-img>', '<video>') + _SMOL_GRID,
        named={'bos_token': '<|im_start|>', 'eos_token': '<end_of_utterance>',
               'pad_token': '<|im_end|>', 'unk_token': '<|endoftext|>'},
        model_specific={'image_token': '<image>', 'fake_image_token': '<fake_token_around_image>',
                        'global_image_token': '<global-img>',
                        'end_of_utterance_token': '<end_of_utterance>', 'video_token': '<video>'},
        role_words=('User', 'Assistant', 'System'), chat_template=SMOLVLM_TEMPLATE),
}


def check_family(family: str) -> str:
    """Return `family` if the zoo knows it, else raise naming the known ones."""
    if family not in TEXT_SPECS:
        raise UnsupportedArchitectureError(
            f'the model zoo has no family {family!r}; use one of: {", ".join(FAMILIES)}')
    return family


def build_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """Build the real (word-piece) tokenizer of `family`, with its special tokens and template."""
    spec = TEXT_SPECS[check_family(family)]
    backend = build_word_piece(
        list(spec.special_tokens), list(spec.role_words),
        spec.named.get('bos_token') if spec.add_bos else None, spec.named['unk_token'])
    named_values = set(spec.named.values()) | set(spec.model_specific.values())
    extra = [t for t in spec.special_tokens if t not in named_values]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, **spec.named, extra_special_tokens=extra,
        model_specific_special_tokens=dict(spec.model_specific),
        chat_template=spec.chat_template, padding_side=spec.padding_side,
        clean_up_tokenization_spaces=False, model_max_length=32768,
        processor_class=PROCESSOR_CLASSES[family])
    return tokenizer
