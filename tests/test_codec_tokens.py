"""Draft tokens coded by an n-gram model and the arithmetic coder: exact, self-delimiting, near
their information, and a damaged part fails cleanly."""

import math
import random

import pytest

from intelliflow.codec.entropy_coding import Tables, _ArithmeticDecoder, _ArithmeticEncoder, entropy_coder
from intelliflow.codec.tokens import TokenCoder
from intelliflow.errors import BitstreamError, ConfigError

START, EOS, VOCAB = [1], 2, 40


def templated_ngrams(n=500, seed=0):
    """N-gram counts of captions 'a SIZE COLOUR SHAPE [left of a SIZE COLOUR SHAPE] EOS' as ids."""
    rng, counts = random.Random(seed), {}
    for _ in range(n):
        caption = [4, rng.choice([5, 6]), rng.choice([7, 8, 9, 10]), rng.choice([11, 12, 13])]
        if rng.random() < 0.5:
            caption += [14, 15, 4, rng.choice([5, 6]), rng.choice([7, 8, 9, 10]), rng.choice([11, 12, 13])]
        history = [str(t) for t in START]
        for t in caption + [EOS]:
            context = " ".join(history[-2:])
            counts.setdefault(context, {})
            counts[context][str(t)] = counts[context].get(str(t), 0) + 1
            history.append(str(t))
    return counts


def test_drafts_round_trip_with_bytes_after_them_and_cost_about_their_information():
    coder, rng = TokenCoder(templated_ngrams(), START, EOS, 16, VOCAB), random.Random(1)
    total_bits = total_info = 0
    for i in range(400):
        if i % 3:   # a caption of the template
            draft = [4, rng.choice([5, 6]), rng.choice([7, 8, 9, 10]), rng.choice([11, 12, 13]), EOS]
        else:       # anything: unseen contexts and tokens escape to shorter contexts and raw bits
            draft = [rng.randrange(VOCAB) for _ in range(rng.randrange(1, 20))]
            draft = draft[:16] if EOS not in draft and len(draft) >= 16 else draft + [EOS]
        data = coder.encode(draft)
        tail = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 8)))
        tokens, end = coder.decode(b"xy" + data + tail, offset=2)
        expected = draft[:16]
        expected = expected[:expected.index(EOS) + 1] if EOS in expected else expected
        assert tokens == expected and end == 2 + len(data)
        if i % 3:
            total_bits += 8 * len(data)
            total_info += coder.bits(draft)
    n = 400 - 134
    assert total_info / n == pytest.approx(1 + 2 + math.log2(3) + 1, abs=0.5)   # size, colour, shape, end or not
    assert total_bits / n < total_info / n + 9                                # termination and padding


def test_sequences_a_decoder_could_not_end_are_refused_and_damage_is_caught():
    coder = TokenCoder(templated_ngrams(), START, EOS, 16, VOCAB)
    with pytest.raises(ConfigError, match="end token"):
        coder.encode([4, 5, 7])            # neither ended nor max_tokens long
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        coder.encode([64, EOS])
    with pytest.raises(BitstreamError):
        for data in (b"\xff" * 3, b"\x00", b"\xfe\xff\xff\xff\xff\xff"):
            coder.decode(data)             # raw-escaped ids past the vocabulary, or a part past the end
            coder.decode(data[:0])


def test_delimited_arithmetic_messages_say_where_they_end():
    rng = random.Random(3)
    tables = Tables([[0, 40000, 60000, 65535, 65536]], [5], [0])   # 3 symbols and the escape
    for _ in range(300):
        symbols = [rng.choice([0, 0, 0, 1, 2, 9]) for _ in range(rng.randrange(1, 40))]   # 9: escaped
        encoder = _ArithmeticEncoder()
        encoder.encode(symbols, [0] * len(symbols), tables)
        data = encoder.finish(delimited=True)
        decoder = _ArithmeticDecoder(data + bytes(rng.randrange(256) for _ in range(5)))
        assert decoder.decode([0] * len(symbols), tables) == symbols
        assert decoder.message_bytes() == len(data)


@pytest.mark.parametrize("coder", ["arithmetic", "range", "rans"])
def test_drafts_ride_inside_any_entropy_coders_message(coder):
    tokens = TokenCoder(templated_ngrams(), START, EOS, 16, VOCAB)
    drafts = [[4, 5, 7, 11, EOS], [4, 6, 10, 13, 14, 15, 4, 5, 8, 12, EOS], [39, 0, EOS], [4] * 16]
    encoder = entropy_coder(coder).encoder()
    encoder.encode([1, 2, 3], [0, 0, 0], Tables([[0, 30000, 50000, 65535, 65536]], [5], [0]))   # a codec's own symbols
    for d in drafts:
        tokens.write(encoder, d)
    decoder = entropy_coder(coder).decoder(encoder.finish())
    assert decoder.decode([0, 0, 0], Tables([[0, 30000, 50000, 65535, 65536]], [5], [0])) == [1, 2, 3]
    assert [tokens.read(decoder) for _ in drafts] == drafts
