"""The codec registry and the one name resolver; every codec declares the one interface."""

from dataclasses import replace

import pytest
import torch

from intelliflow.codec import Codec, register_codec, resolve_codec
from intelliflow.codec.registry import (ALIASES, canonical_name, checkpoint_folder, codec_class, payload_kind_name,
                                        registered_codecs)
from intelliflow.errors import BitstreamError, ConfigError, RegistryError


def test_names_users_type_resolve_to_ready_codecs():
    assert resolve_codec("jpeg-30").quality == 30 and resolve_codec("jpeg-30").name == "jpeg-30"
    assert resolve_codec("quantize-6").bits == 6 and resolve_codec("webp").quality == 75
    shipped = resolve_codec("shapes-hyperprior")
    assert shipped.learned and not shipped.training and shipped.name == "shapes-hyperprior"
    alias = resolve_codec("mse-codec")                            # an alias of a shipped checkpoint
    # the same architecture as ours; only ours was retrained with monotonic gains so far
    assert checkpoint_folder("mse-codec").name == ALIASES["mse-codec"] \
        and replace(alias.config, monotonic_gains=True) == shipped.config
    folder = str(checkpoint_folder("shapes-jscc-awgn"))
    assert resolve_codec(folder).sends == "symbols"               # a checkpoint folder
    assert canonical_name(folder) == canonical_name("shapes-jscc-awgn") == "shapes-jscc-awgn"
    assert canonical_name("jpeg-30") == canonical_name("jpeg-90") == "jpeg"  # any quality decodes alike


@pytest.mark.parametrize("name, error, words", [
    ("jpeg-x", ConfigError, "integer"), ("jpeg-1e3", ConfigError, "integer"), ("quantize-abc", ConfigError, "bits"),
    ("quantize-5", ConfigError, "2, 4, 6, 8"), ("jpeg-0", ConfigError, "1..100"), ("text-3", ConfigError, "no option"),
    ("hyperprior", ConfigError, "trained weights"), ("shapes-jscc", RegistryError, "not a registered codec"),
    ("zip", RegistryError, "not a shipped codec")])
def test_malformed_names_are_clear_errors(name, error, words):
    with pytest.raises(error, match=words):
        resolve_codec(name)


def test_every_registered_codec_declares_the_interface():
    for name, entry in registered_codecs().items():
        cls = entry.cls
        assert issubclass(cls, Codec) and cls.registered_name == name
        assert cls.takes in ("features", "image", "caption") and cls.sends in ("bytes", "symbols")
        assert cls.encode is not Codec.encode and cls.decode is not Codec.decode, name
        assert cls.rate is None or cls.rate.name in ("q", "symbols")
        assert codec_class(name) is cls
    ids = [e.cls.payload_id for e in registered_codecs().values() if e.cls.payload_id is not None]
    assert len(ids) == len(set(ids)) and payload_kind_name(2) == "hyperprior" and payload_kind_name(9) == "unknown"
    assert resolve_codec("shapes-hyperprior").rate_range() == (0.0, 5.0)
    assert resolve_codec("shapes-jscc-awgn").rate_range() == (1, 16) and resolve_codec("text").rate_range() is None


def test_rate_options_keep_only_what_the_codec_takes():
    assert resolve_codec("shapes-hyperprior").rate_options(q=2.0, symbols=4, snr_db=3.0, target_bytes=None) == {"q": 2.0}
    assert resolve_codec("shapes-jscc-awgn").rate_options(q=2.0, symbols=4, snr_db=3.0) == {"symbols": 4, "snr_db": 3.0}
    assert resolve_codec("jpeg-50").rate_options(q=2.0, symbols=4) == {}


def test_a_payload_from_another_codec_names_its_writer():
    features = torch.randn(1, 192, 8, 8)
    payload = resolve_codec("quantize-8").encode(features)[0]
    with pytest.raises(BitstreamError, match="quantize codec, not a hyperprior"):
        resolve_codec("shapes-hyperprior").decode([payload])


def test_registering_twice_or_reusing_a_payload_id_is_refused():
    with pytest.raises(RegistryError, match="twice"):
        @register_codec("jpeg")
        class Other(Codec):
            pass
    with pytest.raises(RegistryError, match="taken"):
        @register_codec("another", payload_id=2)
        class Another(Codec):
            pass
