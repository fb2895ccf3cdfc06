"""The entropy coders: CompressAI's rANS and constriction's range coder code the same symbols under
the same tables, exactly, escapes included, and refuse damaged streams without crashing."""

import numpy as np
import pytest

from intelliflow.codec.entropy_coding import ENTROPY_CODERS, Tables, entropy_coder
from intelliflow.errors import BitstreamError, ConfigError


def _gaussian_tables():
    """CompressAI's own tables: a GaussianConditional's, one row per scale."""
    from compressai.entropy_models import GaussianConditional

    gc = GaussianConditional([0.2, 0.5, 1.0, 4.0, 16.0])
    gc.update()
    return Tables.of(gc)


@pytest.mark.parametrize("name", ENTROPY_CODERS)
def test_symbols_round_trip_exactly_escapes_included(name):
    tables = _gaussian_tables()
    rng = np.random.default_rng(0)
    indexes = rng.integers(0, 5, size=400)
    scales = np.array([0.2, 0.5, 1.0, 4.0, 16.0])[indexes]
    symbols = np.round(rng.normal(0, scales)).astype(int)
    symbols[[3, 50, 399]] = [900, -70000, 12345678]   # far outside every table: escaped
    second = rng.integers(-3, 4, size=37)
    encoder = entropy_coder(name).encoder()
    encoder.encode(symbols.tolist(), indexes.tolist(), tables)
    encoder.encode(second.tolist(), [0] * 37, tables)
    stream = encoder.finish()
    decoder = entropy_coder(name).decoder(stream)
    assert decoder.decode(indexes.tolist(), tables) == symbols.tolist()
    assert decoder.decode([0] * 37, tables) == second.tolist()


def test_the_arithmetic_coder_ends_within_a_byte_and_the_range_coder_within_a_word():
    tables = _gaussian_tables()
    rng = np.random.default_rng(1)
    excess = {name: [] for name in ENTROPY_CODERS}
    for _ in range(40):
        indexes = rng.integers(0, 3, size=256)
        symbols = np.round(rng.normal(0, np.array([0.2, 0.5, 1.0])[indexes])).astype(int)
        pmf = tables.pmf()
        info = -np.log2(pmf[indexes, symbols - tables.offsets[indexes]]).sum()
        for name in ENTROPY_CODERS:
            encoder = entropy_coder(name).encoder()
            encoder.encode(symbols.tolist(), indexes.tolist(), tables)
            excess[name].append(8 * len(encoder.finish()) - info)
    assert 0 <= np.mean(excess["range"]) <= 32          # one sealing word at most, 16 bits on average
    assert np.mean(excess["rans"]) >= np.mean(excess["range"]) + 16
    assert -1 <= np.mean(excess["arithmetic"]) <= 6 and max(excess["arithmetic"]) <= 10   # a byte's padding, about


@pytest.mark.parametrize("name", ["arithmetic", "range"])
def test_a_damaged_stream_is_refused_or_decodes_to_something_without_crashing(name):
    tables = _gaussian_tables()
    with pytest.raises(BitstreamError, match="32-bit words"):
        entropy_coder("range").decoder(b"\x01\x02\x03")
    rng = np.random.default_rng(2)
    for _ in range(50):
        garbage = rng.integers(0, 256, size=4 * int(rng.integers(0, 6)), dtype=np.uint8).tobytes()
        try:
            out = entropy_coder(name).decoder(garbage).decode([0, 1, 2, 3, 4] * 20, tables)
        except BitstreamError:
            continue
        assert len(out) == 100


def test_an_unknown_coder_is_a_config_error():
    with pytest.raises(ConfigError, match="arithmetic, range, rans"):
        entropy_coder("huffman")
    from intelliflow.codec.digital import FeatureCodecConfig

    with pytest.raises(ConfigError, match="entropy_coder"):
        FeatureCodecConfig(in_channels=8, entropy_coder="huffman")
