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
A real word-piece tokenizer over English words about simple scenes, built in code.

The vocabulary holds whole words (lower-case and capitalised) for questions and answers about
generated scenes, a few hundred common English words, and every ASCII letter and digit both as a
word start and as a ``##`` continuation piece, so that any ASCII text tokenizes without ``<unk>``.
Decoding joins words with spaces and glues continuation pieces back together, so ``'yes'``
encodes to one token and decodes to ``'yes'``.
"""

import string

from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, Tokenizer

SCENE_WORDS = """
red green blue yellow purple white orange black grey gray pink brown cyan magenta
colour color colours colors coloured colored shade dark light bright pale
circle circles square squares triangle triangles rectangle rectangles star stars disk disc
ball balls box boxes cube cubes sphere spheres cylinder cylinders cone cones ring rings
shape shapes object objects thing things item items figure figures dot dots line lines
big small large tiny huge little medium size sizes bigger smaller larger largest smallest
left right top bottom middle centre center above below under over beside next behind front
near far between inside outside corner edge side upper lower closer further nearest farthest
zero one two three four five six seven eight nine ten eleven twelve
first second third last number count many much more less fewer most least same different
yes no true false none both either neither all any some each every only also
is are was were be been am isn aren there here this that these those it its they them
what which who whom whose where when why how do does did can could would should will shall
the a an of in on at to from with without by for and or but not no nor as than then
image picture photo scene frame view camera background foreground
question answer answers option options choose pick select say tell describe
visible hidden present absent empty full occluded touching overlapping
"""

COMMON_WORDS = """
about after again against ago ahead almost alone along already although always among
another anything anyone around ask away back bad because become before begin being best
better between bird birds blank board boat body book bottle bowl boy bread building bus
but buy call came car cars carry cat cats chair child children city clean clear close
cloud coat cold come cup cut day dog dogs door down draw drink drive dry during early
easy eat end enough even evening ever eye eyes face fact fall family fast father feel few
field find fine fire fish floor flower fly food foot forest form found friend game garden
get girl give glass go going good got great ground group grow hair half hand hands happy
hard has have he head hear heart heavy help her high hill him his hold home horse hot house
if important into just keep kind know land late laugh lay lead learn leave leg let life
like listen live long look lot love low made make man men may me mean meet might mind miss
money moon morning mother mountain move must my name need never new night nothing now
off often old once open other our out own page paper part people person place plant play
point put rain read ready real road rock room round run sand sat saw sea see seem set
she shoe shoes short show shut sign since sing sit sky sleep slow snow so soft something
sometimes song soon sound speak stand start stay still stop story street strong such sun
sure table take talk tall tea than thank their think thought through time today together
too took toward town tree trees try turn under until up us use very wait walk wall want
warm watch water way we well went wet while whole wide wind window word words work world
write year years yet you young your
"""

NUMERALS = ' '.join(str(n) for n in range(21))
PUNCTUATION = list('?.,!:;\'"-()[]/&+=*%#@$_')


def english_words() -> list[str]:
    """Return the whole words of the vocabulary, in a fixed order, each once."""
    base = (SCENE_WORDS + COMMON_WORDS + NUMERALS).split()
    words: list[str] = []
    seen: set[str] = set()
    for word in base + [w.capitalize() for w in base]:
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def build_word_piece(special_tokens: list[str], role_words: list[str], bos_token: str | None,
                     unk_token: str) -> Tokenizer:
    """
    Build a case-sensitive word-piece ``tokenizers.Tokenizer`` with the given special tokens.

    `special_tokens` take the first ids, in order; `role_words` are extra whole words that a chat
    template writes (for example ``USER`` or ``Assistant``). When `bos_token` is given, encoding
    with special tokens prepends it, as the Llama tokenizer does.
    """
    pieces = (special_tokens + role_words + english_words() + PUNCTUATION
              + list(string.ascii_letters + string.digits)
              + ['##' + c for c in string.ascii_letters + string.digits])
    vocab: dict[str, int] = {}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=unk_token,
                                           max_input_chars_per_word=64))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # A continuation piece that starts a decoded span (e.g. generated text) loses its '##' too.
    tokenizer.decoder = decoders.Sequence(
        [decoders.WordPiece(prefix='##', cleanup=True), decoders.Replace('##', '')])
    if bos_token is not None:
        bos_id = vocab[bos_token]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f'{bos_token} $A', pair=f'{bos_token} $A {bos_token} $B',
            special_tokens=[(bos_token, bos_id)])
    return tokenizer
