"""Entropy coders for the learned codecs' symbols: an arithmetic coder, constriction's range coder
and CompressAI's rANS.

Both code the same symbols under the same probability tables, CompressAI's quantised CDFs (one
row per distribution; the entropy bottleneck has a row per channel, the Gaussian conditional a row
per scale), so they differ only in what a message costs beyond its information::

    encoder = entropy_coder("arithmetic").encoder()
    encoder.encode(symbols, indexes, tables)      # z, then y: the order the decoder reads them
    stream = encoder.finish()                     # bytes
    decoder = entropy_coder("arithmetic").decoder(stream)
    symbols = decoder.decode(indexes, tables)     # as many calls, in the same order

- ``rans``: CompressAI's ``BufferedRansEncoder`` / ``RansDecoder`` (ryg's rANS, 64-bit state and
  32-bit words): the flush writes the whole 8-byte state, so a message costs about 45 bits more
  than its information (measured on the shipped codec's payloads: ``benchmarks/entropy_coders.py``).
- ``range``: constriction's ``RangeEncoder`` / ``RangeDecoder`` (64-bit state, 32-bit words),
  whose seal writes only the words that pin the final interval down: about 16 bits over the
  information, on average, for the same payloads.
- ``arithmetic`` (the default): a binary arithmetic coder written here (:class:`_ArithmeticEncoder`),
  on CompressAI's 16-bit integer frequencies as they are, ending on the shortest bit string in
  the final interval and sending no trailing zero bytes: the body is the information give or take
  a few bits (1.5 bits *under* the likelihood estimate on average, at most about 9 over). Why not a
  library: both libraries here end a message on whole 32-bit words or a whole 64-bit state, which
  at the 60-130 bits a caption's features need is 15-45 bits per image, 20-60 % of the payload; it
  is pure Python integer arithmetic (about 1.4x the range coder's time for a whole encode or
  decode, transforms included), so it is exact on every machine.

A symbol outside a table's range is coded as CompressAI codes it: the table's last entry (the
escape) and then the value in 4-bit chunks under a uniform distribution, so either coder takes
any integer latents, exactly.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Callable, Sequence

import numpy as np

from intelliflow.errors import BitstreamError, ConfigError

ENTROPY_CODERS = ("arithmetic", "range", "rans")
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


def _read_bypass(next_chunk: Callable[[], int], coder: str) -> int:
    """The inverse of :func:`_bypass_chunks`: one escaped value's raw code from its 4-bit chunks."""
    n = count = next_chunk()
    while count == _BYPASS_MAX:
        count = next_chunk()
        n += count
        if n > 64 // _BYPASS_BITS:   # no latent needs more than 64 bits: the stream is damaged
            raise BitstreamError(f"the {coder}-coded stream is damaged: an escaped value too long")
    raw = 0
    for j in range(n):
        raw |= next_chunk() << (j * _BYPASS_BITS)
    return raw


def _unescape(raw: int, max_value: int) -> int:
    """The table symbol an escaped value stands for: CompressAI's mapping (:func:`_split_escapes`), undone."""
    return -(raw + 1) // 2 if raw % 2 else max_value + raw // 2


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

    def decode(self, indexes: Sequence[int], tables: Tables) -> list[int]:
        indexes = np.asarray(indexes, dtype=np.int64)
        if not len(indexes):
            return []
        try:
            coded = self._decoder.decode(self._model, tables.pmf()[indexes]).astype(np.int64)
            max_value = tables.lengths[indexes] - 2
            value = coded.copy()
            for i in np.flatnonzero(coded == max_value):
                value[i] = _unescape(_read_bypass(self._next_chunk, "range"), int(max_value[i]))
        except (RuntimeError, ValueError, AssertionError) as exc:
            raise BitstreamError(f"the range-coded stream is damaged: {exc}") from exc
        return (value + tables.offsets[indexes]).tolist()


_WIDTH = 32                       # the arithmetic coder's register width
_TOP, _HALF, _QUARTER = (1 << _WIDTH) - 1, 1 << (_WIDTH - 1), 1 << (_WIDTH - 2)
_CDF_BITS = 16                    # CompressAI's CDF precision: the frequencies are coded as they are
_UNIFORM16 = [i << (_CDF_BITS - _BYPASS_BITS) for i in range(_BYPASS_MAX + 2)]   # 16 equal chunks


class _ArithmeticEncoder:
    """A binary arithmetic coder (Witten, Neal and Cleary, CACM 1987: 32-bit low/high, pending bits
    for straddling intervals) on CompressAI's integer frequencies, ending on the shortest bit string
    inside the final interval. The decoder reads zeros past the end, so trailing zero bits and bytes
    are not sent: a message costs its information plus about 2 bits, plus the last byte's padding."""

    def __init__(self):
        self.low, self.high, self.pending = 0, _TOP, 0
        self.bits: list[int] = []

    def _emit(self, bit: int) -> None:
        self.bits.append(bit)
        if self.pending:
            self.bits.extend([1 - bit] * self.pending)
            self.pending = 0

    def _code(self, lo: int, hi: int) -> None:
        """Narrow to the symbol whose cumulative frequencies are [lo, hi) out of 2^16."""
        span = self.high - self.low + 1
        self.high = self.low + ((span * hi) >> _CDF_BITS) - 1
        self.low += (span * lo) >> _CDF_BITS
        while True:
            if self.high < _HALF:
                self._emit(0)
            elif self.low >= _HALF:
                self._emit(1)
                self.low -= _HALF
                self.high -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.pending += 1
                self.low -= _QUARTER
                self.high -= _QUARTER
            else:
                return
            self.low <<= 1
            self.high = (self.high << 1) | 1

    def encode(self, symbols: Sequence[int], indexes: Sequence[int], tables: Tables) -> None:
        symbols, indexes = np.asarray(symbols, dtype=np.int64), np.asarray(indexes, dtype=np.int64)
        if not len(symbols):
            return
        coded, escaped = _split_escapes(symbols, indexes, tables)
        cdf = tables.as_lists()[0]
        for s, t in zip(coded.tolist(), indexes.tolist()):
            row = cdf[t]
            self._code(row[s], row[s + 1])
        for raw in escaped:   # as the range coder: a call's escaped values after its symbols
            for chunk in _bypass_chunks(raw):
                self._code(_UNIFORM16[chunk], _UNIFORM16[chunk + 1])

    def finish(self, delimited: bool = False) -> bytes:
        """The message. By default it ends on the value in [low, high] with the fewest significant
        bits, trailing zeros dropped (the decoder pads with zeros). ``delimited``: the value whose
        every continuation stays in [low, high], zeros kept, so other bytes may follow the message
        and the decoder knows where it ended (:meth:`_ArithmeticDecoder.message_bytes`)."""
        k = _final_bits(self.low, self.high, delimited)
        step = 1 << (_WIDTH - k)
        value = -(-self.low // step) * step
        top = [(value >> (_WIDTH - 1 - i)) & 1 for i in range(k)]
        if top:
            self._emit(top[0])
            self.bits.extend(top[1:])
        elif self.pending:          # value 0 still needs its first bit, for the pending ones after it
            self._emit(0)
        bits = self.bits
        while bits and not bits[-1] and not delimited:
            bits.pop()
        return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes() if bits else b""


def _final_bits(low: int, high: int, delimited: bool) -> int:
    """How many bits of the final value the arithmetic encoder sends (see its ``finish``)."""
    for k in range(_WIDTH + 1):
        step = 1 << (_WIDTH - k)
        value = -(-low // step) * step
        if value <= high and (not delimited or value + step - 1 <= high):
            return k
    return _WIDTH


class _ArithmeticDecoder:
    def __init__(self, stream: bytes):
        self._bits = np.unpackbits(np.frombuffer(bytes(stream), dtype=np.uint8)).tolist()
        self._pos = 0
        self.low, self.high, self.value = 0, _TOP, 0
        self.shifts = self.pending = 0     # the encoder's bits so far, and how many of them wait (straddles)
        for _ in range(_WIDTH):
            self.value = (self.value << 1) | self._bit()

    def _bit(self) -> int:
        pos = self._pos
        self._pos += 1
        return self._bits[pos] if pos < len(self._bits) else 0

    def _symbol(self, row: list[int], stop: int) -> int:
        """The symbol whose frequency interval holds the value (rows: CompressAI's CDF, ``stop`` entries)."""
        span = self.high - self.low + 1
        target = min(max((((self.value - self.low + 1) << _CDF_BITS) - 1) // span, 0), (1 << _CDF_BITS) - 1)
        s = min(bisect_right(row, target, 0, stop) - 1, stop - 2)
        lo, hi = row[s], row[s + 1]
        self.high = self.low + ((span * hi) >> _CDF_BITS) - 1
        self.low += (span * lo) >> _CDF_BITS
        while True:
            if self.high < _HALF:
                self.pending = 0
            elif self.low >= _HALF:
                self.low -= _HALF
                self.high -= _HALF
                self.value -= _HALF
                self.pending = 0
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.low -= _QUARTER
                self.high -= _QUARTER
                self.value -= _QUARTER
                self.pending += 1
            else:
                return s
            self.shifts += 1
            self.low <<= 1
            self.high = (self.high << 1) | 1
            self.value = (self.value << 1) | self._bit()

    def _next_chunk(self) -> int:
        return self._symbol(_UNIFORM16, len(_UNIFORM16))

    def message_bytes(self) -> int:
        """After the last symbol of a ``delimited`` message: its length in bytes (what follows it
        in the stream is someone else's)."""
        k = _final_bits(self.low, self.high, True)
        bits = self.shifts + (k if k else (1 if self.pending else 0))
        return -(-bits // 8)

    def decode(self, indexes: Sequence[int], tables: Tables) -> list[int]:
        cdf, lengths, offsets = tables.as_lists()
        indexes = [int(t) for t in indexes]
        values = [self._symbol(cdf[t], lengths[t]) for t in indexes]
        out = []
        for v, t in zip(values, indexes):   # a call's escaped values follow all its symbols
            if v == lengths[t] - 2:
                v = _unescape(_read_bypass(self._next_chunk, "arithmetic"), lengths[t] - 2)
            out.append(v + offsets[t])
        return out


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
        return {"arithmetic": _ArithmeticEncoder, "range": _RangeEncoder, "rans": _RansEncoder}[self.name]()

    def decoder(self, stream: bytes):
        return {"arithmetic": _ArithmeticDecoder, "range": _RangeDecoder, "rans": _RansDecoder}[self.name](stream)
