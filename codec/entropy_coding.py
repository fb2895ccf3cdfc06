"""Entropy coders for the learned codecs' symbols: CompressAI's rANS and constriction's range coder.

Both code the same symbols under the same probability tables, CompressAI's quantised CDFs (one
row per distribution; the entropy bottleneck has a row per channel, the Gaussian conditional a row
per scale), so they differ only in what a message costs beyond its information::

    encoder = entropy_coder("range").encoder()
    encoder.encode(symbols, indexes, tables)      # z, then y: the order the decoder reads them
    stream = encoder.finish()                     # bytes
    decoder = entropy_coder("range").decoder(stream)
    symbols = decoder.decode(indexes, tables)     # as many calls, in the same order

- ``rans``: CompressAI's ``BufferedRansEncoder`` / ``RansDecoder`` (ryg's rANS, 64-bit state and
  32-bit words): the flush writes the whole 8-byte state, so a message costs about 45 bits more
  than its information (measured on the shipped codec's payloads: ``benchmarks/entropy_coders.py``).
- ``range``: constriction's ``RangeEncoder`` / ``RangeDecoder`` (64-bit state, 32-bit words),
  whose seal writes only the words that pin the final interval down: about 16 bits over the
  information, on average, for the same payloads. This is the default.

A symbol outside a table's range is coded as CompressAI codes it: the table's last entry (the
escape) and then the value in 4-bit chunks under a uniform distribution, so either coder takes
any integer latents, exactly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from intelliflow.errors import BitstreamError, ConfigError

ENTROPY_CODERS = ("range", "rans")
_BYPASS_BITS, _BYPASS_MAX = 4, 15   # CompressAI's bypass coding of escaped values


class Tables:
    """One entropy model's quantised CDFs, as CompressAI stores them.

    :param cdf: [T, L] int (16-bit precision, each row ending at 65536 then zero-padded);
    :param lengths: [T] entries used per row (the last symbol, ``lengths - 2``, is the escape);
    :param offsets: [T] the integer each row's symbol 0 stands for.
    """

    def __init__(self, cdf, lengths, offsets):
        self.cdf = np.asarray(cdf, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        self.offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
        self._lists = None
        self._pmf = None

    @classmethod
    def of(cls, module) -> "Tables":
        """The tables of a CompressAI entropy model (``EntropyBottleneck``, ``GaussianConditional``)."""
        return cls(module._quantized_cdf.cpu().numpy(), module._cdf_length.cpu().numpy(), module._offset.cpu().numpy())

    def as_lists(self) -> tuple[list, list, list]:
        """(cdfs, lengths, offsets) as CompressAI's C++ coder takes them."""
        if self._lists is None:
            self._lists = (self.cdf.tolist(), self.lengths.tolist(), self.offsets.tolist())
        return self._lists

    def pmf(self) -> np.ndarray:
        """[T, L - 1] float64 probabilities of the symbols 0 .. lengths - 2 (zero beyond a row's length)."""
        if self._pmf is None:
            width = int(self.lengths.max()) - 1
            pmf = np.diff(self.cdf[:, :width + 1], axis=1).astype(np.float64)
            pmf[np.arange(width)[None, :] >= (self.lengths[:, None] - 1)] = 0.0
            self._pmf = np.clip(pmf, 0.0, None) / 65536.0
        return self._pmf


def _split_escapes(symbols: np.ndarray, indexes: np.ndarray, tables: Tables) -> tuple[np.ndarray, list[int]]:
    """Symbols -> (table symbols, with out-of-range values replaced by the escape; the escaped raw
    values, in order), exactly as CompressAI's rANS interface maps them."""
    max_value = tables.lengths[indexes] - 2
    value = symbols - tables.offsets[indexes]
    low, high = value < 0, value >= max_value
    raw = np.where(low, -2 * value - 1, np.where(high, 2 * (value - max_value), 0))
    coded = np.where(low | high, max_value, value)
    return coded, [int(r) for r in raw[low | high]]


def _bypass_chunks(raw: int) -> list[int]:
    """CompressAI's bypass code of one escaped value: its 4-bit chunk count (in pieces of at most 15),
    then the chunks, low first."""
    n = 0
    while raw >> (n * _BYPASS_BITS):
        n += 1
    out, count = [], n
    while count >= _BYPASS_MAX:
        out.append(_BYPASS_MAX)
        count -= _BYPASS_MAX
    out.append(count)
    return out + [(raw >> (j * _BYPASS_BITS)) & _BYPASS_MAX for j in range(n)]


class _RansEncoder:
    def __init__(self):
        from compressai.ans import BufferedRansEncoder

        self._encoder = BufferedRansEncoder()

    def encode(self, symbols: Sequence[int], indexes: Sequence[int], tables: Tables) -> None:
        self._encoder.encode_with_indexes(list(map(int, symbols)), list(map(int, indexes)), *tables.as_lists())

    def finish(self) -> bytes:
        return self._encoder.flush()


class _RansDecoder:
    def __init__(self, stream: bytes):
        from compressai.ans import RansDecoder

        self._decoder = RansDecoder()
        self._decoder.set_stream(bytes(stream))

    def decode(self, indexes: Sequence[int], tables: Tables) -> list[int]:
        return self._decoder.decode_stream(list(map(int, indexes)), *tables.as_lists())


class _RangeEncoder:
    def __init__(self):
        import constriction

        self._encoder = constriction.stream.queue.RangeEncoder()
        self._model = constriction.stream.model.Categorical(perfect=False)
        self._uniform = constriction.stream.model.Uniform(_BYPASS_MAX + 1)

    def encode(self, symbols: Sequence[int], indexes: Sequence[int], tables: Tables) -> None:
        # one call's symbols in one vectorised pass (escapes included), then the escaped values'
        # bypass chunks in order: the decoder reads a call's whole group before the next call
        symbols, indexes = np.asarray(symbols, dtype=np.int64), np.asarray(indexes, dtype=np.int64)
        if not len(symbols):
            return
        coded, escaped = _split_escapes(symbols, indexes, tables)
        self._encoder.encode(coded.astype(np.int32), self._model, tables.pmf()[indexes])
        chunks = [c for raw in escaped for c in _bypass_chunks(raw)]
        if chunks:
            self._encoder.encode(np.asarray(chunks, dtype=np.int32), self._uniform)

    def finish(self) -> bytes:
        return self._encoder.get_compressed().astype("<u4").tobytes()


class _RangeDecoder:
    def __init__(self, stream: bytes):
        import constriction

        stream = bytes(stream)
        if len(stream) % 4:
            raise BitstreamError(f"a range-coded stream is whole 32-bit words; got {len(stream)} bytes")
        self._decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(stream, dtype="<u4").copy())
        self._model = constriction.stream.model.Categorical(perfect=False)
        self._uniform = constriction.stream.model.Uniform(_BYPASS_MAX + 1)

    def _next_chunk(self) -> int:
        return int(self._decoder.decode(self._uniform))

    def _bypass(self) -> int:
        n = count = self._next_chunk()
        while count == _BYPASS_MAX:
            count = self._next_chunk()
            n += count
            if n > 64 // _BYPASS_BITS:   # no latent needs more than 64 bits: the stream is damaged
                raise BitstreamError("the range-coded stream is damaged: an escaped value too long")
        raw = 0
        for j in range(n):
            raw |= self._next_chunk() << (j * _BYPASS_BITS)
        return raw

    def decode(self, indexes: Sequence[int], tables: Tables) -> list[int]:
        indexes = np.asarray(indexes, dtype=np.int64)
        if not len(indexes):
            return []
        try:
            coded = self._decoder.decode(self._model, tables.pmf()[indexes]).astype(np.int64)
            max_value = tables.lengths[indexes] - 2
            value = coded.copy()
            for i in np.flatnonzero(coded == max_value):   # CompressAI's mapping of escaped values, undone
                raw = self._bypass()
                value[i] = -(raw + 1) // 2 if raw % 2 else max_value[i] + raw // 2
        except (RuntimeError, ValueError, AssertionError) as exc:
            raise BitstreamError(f"the range-coded stream is damaged: {exc}") from exc
        return (value + tables.offsets[indexes]).tolist()


def entropy_coder(name: str) -> "EntropyCoder":
    """The entropy coder called ``name`` (:data:`ENTROPY_CODERS`)."""
    if name not in ENTROPY_CODERS:
        raise ConfigError(f"unknown entropy coder {name!r}; choose from {', '.join(ENTROPY_CODERS)}")
    return EntropyCoder(name)


class EntropyCoder:
    """A factory of encoders (one per message) and decoders (one per received stream)."""

    def __init__(self, name: str):
        self.name = name

    def encoder(self):
        return _RangeEncoder() if self.name == "range" else _RansEncoder()

    def decoder(self, stream: bytes):
        return _RangeDecoder(stream) if self.name == "range" else _RansDecoder(stream)
