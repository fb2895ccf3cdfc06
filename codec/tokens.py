"""Code a caption's token ids compactly: an n-gram model and the arithmetic coder, self-delimiting.

A draft (speculative captioning, :mod:`intelliflow.models.drafter`) travels in front of the
feature payload, so its bits count. Each token is coded under the n-gram model of the captions the
drafter was trained on (Witten-Bell escapes, backing off from the longest context seen to shorter
ones, then to the token's raw bits), with the arithmetic coder of
:mod:`intelliflow.codec.entropy_coding`, ended ``delimited``: the receiver knows where the draft
ends without a length field, and the feature payload follows at the next byte::

    payload = draft part (arithmetic-coded tokens, up to and with the end token) + the codec's payload

A draft of a captioner whose captions follow their training statistics costs about their
information (a templated ``shapes`` caption: 15-25 bits) plus 1-9 bits of termination and padding.

>>> coder = TokenCoder({"1": {"5": 3, "2": 1}, "1 5": {"2": 4}}, start=[1], eos=2, max_tokens=8, vocab_size=40)
>>> data = coder.encode([5, 2]) + b"rest"
>>> coder.decode(data)
([5, 2], 1)
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from intelliflow.errors import BitstreamError, ConfigError

from .entropy_coding import _ArithmeticDecoder, _ArithmeticEncoder

_HALF_ROW = [0, 1 << 15, 1 << 16]   # one raw bit


def _quantized_cdf(pmf: Sequence[float]) -> list[int]:
    """Probabilities -> a 16-bit CDF row (every symbol at least 1/65536), by CompressAI's own quantiser."""
    from compressai._CXX import pmf_to_quantized_cdf

    return [int(v) for v in pmf_to_quantized_cdf([float(p) for p in pmf], 16)]


class TokenCoder:
    """Codes token id sequences under an n-gram model (see the module docstring).

    :param ngrams: ``{"a b": {"c": count}}``: counts of the next token after each context (token ids
        joined by spaces; contexts start with the start tokens), as :meth:`Drafter.count_ngrams`
        collects them; shorter contexts are summed from the longer ones;
    :param start: the start tokens every caption's context begins with;
    :param eos: the end token (a sequence ends after it); :param max_tokens: the longest sequence
        (a sequence that long ends without its end token); :param vocab_size: raw tokens are coded
        in ``ceil(log2(vocab_size))`` bits.
    """

    def __init__(self, ngrams: Mapping[str, Mapping[str, int]], start: Sequence[int], eos: int, max_tokens: int,
                 vocab_size: int):
        if max_tokens < 1 or vocab_size < 2:
            raise ConfigError(f"a token coder needs max_tokens >= 1 and vocab_size >= 2, got {max_tokens}, {vocab_size}")
        self.start, self.eos, self.max_tokens = [int(t) for t in start], int(eos), int(max_tokens)
        self.raw_bits = max(1, math.ceil(math.log2(vocab_size)))
        self.vocab_size = int(vocab_size)
        self.order = 1 + max((len(c.split()) for c in ngrams), default=0)
        counts: dict[tuple[int, ...], dict[int, int]] = {}
        for context, nexts in ngrams.items():
            key = tuple(int(t) for t in context.split())
            for cut in range(len(key) + 1):   # the context and every shorter one (back-off)
                table = counts.setdefault(key[cut:], {})
                for t, n in nexts.items():
                    table[int(t)] = table.get(int(t), 0) + int(n)
        self._counts = counts
        self._rows: dict[tuple[int, ...], tuple[list[int], list[int]]] = {}

    def _row(self, context: tuple[int, ...]) -> tuple[list[int], list[int]] | None:
        """(tokens, 16-bit CDF over those tokens + an escape) of a context, or ``None`` if unseen."""
        if context not in self._rows:
            counts = self._counts.get(context)
            if not counts:
                return None
            tokens = sorted(counts)
            total, distinct = sum(counts.values()), len(tokens)
            pmf = [counts[t] / (total + distinct) for t in tokens] + [distinct / (total + distinct)]  # Witten-Bell
            self._rows[context] = (tokens, _quantized_cdf(pmf))
        return self._rows[context]

    def _contexts(self, history: list[int]) -> list[tuple[int, ...]]:
        """The contexts a token is coded in, longest first (those never seen are skipped by both ends)."""
        longest = tuple(history[-(self.order - 1):]) if self.order > 1 else ()
        return [longest[cut:] for cut in range(len(longest) + 1)]

    def encode(self, tokens: Sequence[int]) -> bytes:
        """Token ids (after the start; up to the end token or ``max_tokens``) -> self-delimiting bytes."""
        tokens = [int(t) for t in tokens][: self.max_tokens]
        if self.eos in tokens:
            tokens = tokens[: tokens.index(self.eos) + 1]
        if not tokens or (tokens[-1] != self.eos and len(tokens) < self.max_tokens):
            raise ConfigError(f"a token sequence to code ends with its end token {self.eos} or has max_tokens "
                              f"({self.max_tokens}) tokens, as a draft does; got {len(tokens)} tokens")
        encoder = _ArithmeticEncoder()
        history = list(self.start)
        for t in tokens:
            if not 0 <= t < 1 << self.raw_bits:
                raise ConfigError(f"token id {t} is outside the vocabulary of {self.vocab_size}")
            for context in self._contexts(history):
                row = self._row(context)
                if row is None:
                    continue
                known, cdf = row
                if t in known:
                    encoder.code_frequencies(cdf, known.index(t))
                    break
                encoder.code_frequencies(cdf, len(known))   # escape to a shorter context
            else:
                for i in reversed(range(self.raw_bits)):
                    encoder.code_frequencies(_HALF_ROW, (t >> i) & 1)
            history.append(t)
        return encoder.finish(delimited=True)

    def decode(self, data: bytes, offset: int = 0) -> tuple[list[int], int]:
        """The tokens coded at ``data[offset:]`` and the offset of the byte after them."""
        decoder = _ArithmeticDecoder(bytes(data[offset:]))
        history, tokens = list(self.start), []
        while len(tokens) < self.max_tokens and (not tokens or tokens[-1] != self.eos):
            token = None
            for context in self._contexts(history):
                row = self._row(context)
                if row is None:
                    continue
                known, cdf = row
                index = decoder.decode_frequencies(cdf)
                if index < len(known):
                    token = known[index]
                    break
            if token is None:
                token = 0
                for _ in range(self.raw_bits):
                    token = (token << 1) | decoder.decode_frequencies(_HALF_ROW)
            if token >= self.vocab_size:
                raise BitstreamError(f"the draft part is damaged: token {token} outside the vocabulary")
            tokens.append(token)
            history.append(token)
        end = offset + decoder.message_bytes()
        if end > len(data):
            raise BitstreamError(f"the draft part runs past the end of the payload ({end} > {len(data)} bytes)")
        return tokens, end

    def bits(self, tokens: Sequence[int]) -> float:
        """The model's information of a token sequence, in bits (what :meth:`encode` costs, less its
        termination and padding)."""
        tokens = [int(t) for t in tokens][: self.max_tokens]
        history, total = list(self.start), 0.0
        for t in tokens:
            for context in self._contexts(history):
                row = self._row(context)
                if row is None:
                    continue
                known, cdf = row
                index = known.index(t) if t in known else len(known)
                total -= math.log2((cdf[index + 1] - cdf[index]) / 65536)
                if t in known:
                    break
            else:
                total += self.raw_bits
            history.append(t)
            if t == self.eos:
                break
        return total
