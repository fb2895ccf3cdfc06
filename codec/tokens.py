"""Code a caption's token ids compactly: an n-gram model and the arithmetic coder, self-delimiting.

A draft (speculative captioning, :mod:`intelliflow.models.drafter`) travels with the feature
payload, so its bits count. Each token is coded under the n-gram model of the captions the drafter
was trained on. A codec with an entropy coder of its own (``carries_side``: the feature codecs)
codes the draft in its own message, after its latents, so the draft costs its information and no
termination; with any other byte codec the draft travels in front of the payload, arithmetic-coded
and ended ``delimited`` (the receiver knows where it ends without a length field; the payload
follows at the next byte)::

    payload = the codec's payload, the draft inside its entropy-coded message   (carries_side)
    payload = draft part + the codec's payload                                  (any other byte codec)

A ``shapes`` caption costs about its information, 16 bits, inside a feature codec's message, and
about 22 in front of another payload (termination and the last byte's padding).

>>> coder = TokenCoder({"1": {"5": 3, "2": 1}, "1 5": {"2": 4}}, start=[1], eos=2, max_tokens=8, vocab_size=40)
>>> data = coder.encode([5, 2]) + b"rest"
>>> coder.decode(data)
([5, 2], 1)
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from intelliflow.errors import BitstreamError, ConfigError

from .entropy_coding import Tables, _ArithmeticDecoder, _ArithmeticEncoder, _bypass_chunks


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
        (a sequence that long ends without its end token); :param vocab_size: token ids run below it.

    Each token is coded in the longest context seen in training, under CompressAI's table layout
    (:class:`~intelliflow.codec.entropy_coding.Tables`): the tokens seen after that context, then
    the escape (Witten-Bell: its probability is the share of distinct tokens), after which an
    unseen token's id follows in CompressAI's bypass code. So :meth:`write` and :meth:`read` work
    with every entropy coder of :mod:`intelliflow.codec.entropy_coding`, inside another message
    (a feature codec's own, which then carries the draft: no termination of its own) or alone
    (:meth:`encode`, :meth:`decode`: delimited arithmetic code).
    """

    def __init__(self, ngrams: Mapping[str, Mapping[str, int]], start: Sequence[int], eos: int, max_tokens: int,
                 vocab_size: int):
        if max_tokens < 1 or vocab_size < 2:
            raise ConfigError(f"a token coder needs max_tokens >= 1 and vocab_size >= 2, got {max_tokens}, {vocab_size}")
        self.start, self.eos, self.max_tokens = [int(t) for t in start], int(eos), int(max_tokens)
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
        self._tables: dict[tuple[int, ...], tuple[dict[int, int], list[int], Tables]] = {}

    def _table(self, history: list[int]) -> tuple[dict[int, int], list[int], Tables]:
        """(token -> symbol, symbol -> token, tables) of the longest context of ``history`` seen in
        training (the empty context when none is: every token escapes)."""
        longest = tuple(history[-(self.order - 1):]) if self.order > 1 else ()
        context = next((longest[cut:] for cut in range(len(longest) + 1) if self._counts.get(longest[cut:])), ())
        if context not in self._tables:
            counts = self._counts.get(context, {})
            tokens = sorted(counts)
            total, distinct = sum(counts.values()), len(tokens)
            pmf = [counts[t] / (total + distinct) for t in tokens] + [distinct / (total + distinct) if total else 1.0]
            cdf = _quantized_cdf(pmf)
            self._tables[context] = ({t: i for i, t in enumerate(tokens)}, tokens,
                                     Tables([cdf], [len(cdf)], [0]))
        return self._tables[context]

    def _checked(self, tokens: Sequence[int]) -> list[int]:
        tokens = [int(t) for t in tokens][: self.max_tokens]
        if self.eos in tokens:
            tokens = tokens[: tokens.index(self.eos) + 1]
        if not tokens or (tokens[-1] != self.eos and len(tokens) < self.max_tokens):
            raise ConfigError(f"a token sequence to code ends with its end token {self.eos} or has max_tokens "
                              f"({self.max_tokens}) tokens, as a draft does; got {len(tokens)} tokens")
        bad = next((t for t in tokens if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise ConfigError(f"token id {bad} is outside the vocabulary of {self.vocab_size}")
        return tokens

    def write(self, encoder, tokens: Sequence[int]) -> None:
        """Code token ids (after the start; up to the end token or ``max_tokens``) with ``encoder``
        (an entropy coder's encoder, :func:`~intelliflow.codec.entropy_coding.entropy_coder`)."""
        history = list(self.start)
        for t in self._checked(tokens):
            symbol_of, known, tables = self._table(history)
            encoder.encode([symbol_of.get(t, len(known) + t)], [0], tables)   # unseen: escape + the id
            history.append(t)

    def read(self, decoder) -> list[int]:
        """The token ids :meth:`write` coded, from ``decoder``."""
        history, tokens = list(self.start), []
        while len(tokens) < self.max_tokens and (not tokens or tokens[-1] != self.eos):
            _, known, tables = self._table(history)
            (value,) = decoder.decode([0], tables)
            token = known[value] if value < len(known) else value - len(known)
            if not 0 <= token < self.vocab_size:
                raise BitstreamError(f"the draft is damaged: token {token} outside the vocabulary")
            tokens.append(token)
            history.append(token)
        return tokens

    def encode(self, tokens: Sequence[int]) -> bytes:
        """Token ids -> a self-delimiting message (delimited arithmetic code), for a payload whose
        codec does not carry it in its own message."""
        encoder = _ArithmeticEncoder()
        self.write(encoder, tokens)
        return encoder.finish(delimited=True)

    def decode(self, data: bytes, offset: int = 0) -> tuple[list[int], int]:
        """The tokens :meth:`encode` coded at ``data[offset:]`` and the offset of the byte after them."""
        decoder = _ArithmeticDecoder(bytes(data[offset:]))
        tokens = self.read(decoder)
        end = offset + decoder.message_bytes()
        if end > len(data):
            raise BitstreamError(f"the draft part runs past the end of the payload ({end} > {len(data)} bytes)")
        return tokens, end

    def bits(self, tokens: Sequence[int]) -> float:
        """The model's information of a token sequence, in bits: what it costs inside another
        message, give or take a bit (:meth:`encode` adds its termination and padding)."""
        history, total = list(self.start), 0.0
        for t in self._checked(tokens):
            symbol_of, known, tables = self._table(history)
            row = tables.cdf[0]
            index = symbol_of.get(t, len(known))
            total -= math.log2((row[index + 1] - row[index]) / 65536)
            if t not in symbol_of:   # CompressAI's bypass code of the id: 4-bit chunks and their count
                total += 4 * len(_bypass_chunks(2 * t))
            history.append(t)
        return total
