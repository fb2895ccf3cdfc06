"""Flow: head + codec + channel + tail for training (gradients, rates) and inference (real payloads
through the digital link or the analog channel)."""

import pytest
import torch

from intelliflow.codec import build_codec
from intelliflow.data.shapes import make_sample
from intelliflow.errors import ConfigError
from intelliflow.flow import Device, Flow
from intelliflow.seeding import seed_everything
from test_models_split import tiny_shapes_captioner

IMAGES = [make_sample("test", i).image for i in range(4)]


def digital_codec():
    torch.manual_seed(1)
    return build_codec({"name": "hyperprior", "in_channels": 32, "hidden_channels": 16, "latent_channels": 8,
                        "hyper_channels": 8, "rate_points": 3})


def test_training_pass_gives_rate_and_gradients_only_to_the_codec():
    model = tiny_shapes_captioner()
    codec = digital_codec()
    flow = Flow(model, codec).train()
    px = model.preprocess(IMAGES)
    out = flow(px, q=torch.tensor([0.0, 1.0, 2.0, 2.0]))
    assert out["bits"].shape == (4,) and (out["bits"] > 0).all()
    assert out["features_hat"].shape == out["features"].shape
    loss = model.tail_loss(out["features_hat"], ["a red circle"] * 4) + 1e-3 * out["bits"].mean()
    loss.backward()
    assert codec.g_a[0].weight.grad is not None and codec.g_a[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())   # frozen: nothing reaches the model


def test_trainable_tail_learns_and_the_head_stays_out_of_autograd():
    model = tiny_shapes_captioner()
    flow = Flow(model, digital_codec(), trainable="tail").train()
    out = flow(model.preprocess(IMAGES), q=1.0)
    assert not out["features"].requires_grad
    model.tail_loss(out["features_hat"], ["a red circle"] * 4).backward()
    grads = [p.grad is not None for p in model.parameters()]
    assert any(grads) and not all(grads)                     # the tail learns, the head's layers do not
    with pytest.raises(ConfigError, match="trainable"):
        Flow(model, digital_codec(), trainable="head")


def test_analog_codec_trains_through_the_channel_and_counts_channel_uses():
    seed_everything(3, sionna=True)
    model = tiny_shapes_captioner()
    codec = build_codec({"name": "jscc", "in_channels": 32, "hidden_channels": 16, "symbol_channels": 4})
    flow = Flow(model, codec, {"name": "rayleigh", "block_length": 16, "csi": "estimated", "num_pilots": 2}).train()
    px = model.preprocess(IMAGES)
    out = flow(px, snr_db=torch.tensor([0.0, 5.0, 10.0, 20.0]))
    assert out["channel_uses"] == 4 * 16 + 4 * 2             # 4 symbol channels on 4x4, pilots per block
    model.tail_loss(out["features_hat"], ["a red circle"] * 4).backward()
    assert codec.enc_in.weight.grad.abs().sum() > 0          # through Sionna's channel to the encoder
    half = flow(px, snr_db=10.0, symbols=2)
    assert half["channel_uses"] == 2 * 16 + 2 * 2            # one model, a smaller bandwidth
    result = flow.eval().caption(IMAGES, snr_db=10.0, symbols=2)
    assert result.channel_uses == [36] * 4 and result.payload_bits == [None] * 4 and len(result.captions) == 4
    with pytest.raises(ConfigError, match="snr_db"):
        flow(px)


def test_digital_inference_sends_the_real_payload_and_losses_give_no_caption():
    seed_everything(4, sionna=True)
    model = tiny_shapes_captioner()
    codec = digital_codec().eval()
    codec.update()
    stream = codec.stream_context(model.feature_grid, q=2.0)
    payloads = Device(model, codec).encode(IMAGES, q=2.0, stream=stream).data
    ideal = Flow(model, codec).caption(IMAGES, q=2.0)
    assert ideal.payload_bits == [8 * len(p) for p in payloads] and ideal.channel_uses == [None] * 4
    # stream mode (the default) leaves out what a self-contained file repeats: 4 header bytes and the check
    files = Flow(model, codec, framing="file").caption(IMAGES, q=2.0)
    assert files.payload_bits == [b + 48 for b in ideal.payload_bits] and files.captions == ideal.captions
    link = Flow(model, codec, "awgn")
    clean = link.caption(IMAGES, snr_db=30.0, q=2.0)
    assert clean.captions == ideal.captions and not any(clean.lost)
    assert all(u > 0 for u in clean.channel_uses) and all(m is not None for m in clean.mcs)
    broken = link.caption(IMAGES, snr_db=-10.0, q=2.0, mcs=20)  # far below what MCS 20 needs
    assert all(broken.lost) and broken.captions == [""] * 4
    # "auto" picks each payload's MCS for its own code blocks, not for a full 256-byte block
    at10 = link.caption(IMAGES, snr_db=10.0, q=2.0)   # (tiny payloads would get a slower MCS than 256 bytes)
    assert at10.mcs == [link.link.select_mcs(10.0, len(p)).index for p in payloads]


def test_a_settled_outer_loop_is_frozen_and_the_same_for_the_same_seed():
    model = tiny_shapes_captioner()
    codec = digital_codec().eval()
    codec.update()
    flow = Flow(model, codec, {"name": "rayleigh", "csi": "estimated"})
    offsets = []
    for _ in range(2):
        seed_everything(6, sionna=True)
        offsets.append(flow.settle_link(snr_db=15.0))
    assert offsets[0] == offsets[1] != 0.0 and flow.link.olla.frozen
    flow.caption(IMAGES, snr_db=15.0, q=2.0)
    assert flow.link.olla.offset(15.0) == offsets[0]              # measuring does not move it
    assert Flow(model, codec, "awgn").settle_link(snr_db=15.0) == 0.0   # no outer loop over AWGN
    assert flow.settle_link(snr_db=15.0, mcs=9) == 0.0 and flow.settle_link(snr_db=15.0, ideal=True) == 0.0


def test_channel_use_budget_fits_the_payload_or_loses_the_image():
    seed_everything(5, sionna=True)
    model = tiny_shapes_captioner()
    codec = digital_codec().eval()
    codec.update()
    flow = Flow(model, codec, "awgn")
    roomy = flow.caption(IMAGES, snr_db=20.0, channel_uses=400)
    assert not any(roomy.lost) and all(u <= 400 for u in roomy.channel_uses)
    smallest = min(len(p) for p in Device(model, codec).encode(IMAGES, q=0.0).data)
    assert flow.link.max_payload_bytes(400, roomy.mcs[0]) >= max(b // 8 for b in roomy.payload_bits)
    tight = flow.caption(IMAGES, snr_db=0.0, channel_uses=8)    # nothing fits in 8 channel uses
    assert all(tight.lost) and tight.captions == [""] * 4 and flow.link.max_payload_bytes(8, 5) < smallest


def test_kinds_and_refusals():
    model = tiny_shapes_captioner()
    assert Flow(model, None).kind == "identity" and Flow(model, digital_codec()).kind == "learned"
    assert Flow(model, build_codec("jpeg")).kind == "bytes"
    with pytest.raises(ConfigError, match="identity"):
        Flow(model, None, "awgn").caption(IMAGES, snr_db=10.0)
    with pytest.raises(ConfigError, match="no training pass"):
        Flow(model, build_codec("quantize"))(model.preprocess(IMAGES))


def test_prefix_tokens_travel_the_same_way_in_training_and_at_inference(tmp_path):
    """A CLS token is not on the grid: with a byte codec it rides 8-bit in front of the payload, its
    bits counted, in the training pass (straight-through) exactly as in the real payload."""
    from intelliflow.flow.endpoints import PrefixTokens
    from intelliflow.models import load_split_model
    from tiny_models import tiny_blip

    blip, tokenizer = tiny_blip()
    blip.save_pretrained(tmp_path / "blip")
    tokenizer.save_pretrained(tmp_path / "blip")
    model = load_split_model(tmp_path / "blip", split=1)
    assert model.prefix_tokens == 1
    torch.manual_seed(2)
    codec = build_codec({"name": "hyperprior", "in_channels": model.feature_dim, "hidden_channels": 16,
                         "latent_channels": 8, "hyper_channels": 8, "rate_points": 3}).eval()
    codec.update()
    flow = Flow(model, codec).eval()
    px = model.preprocess(IMAGES[:2])
    with torch.no_grad():
        out = flow(px, q=2.0)
        f = out["features"]
        grid_bits = codec.likelihood_bits(out["likelihoods"])
    prefix_hat, prefix_bits = PrefixTokens.train_roundtrip(f[:, :1])
    assert torch.equal(out["features_hat"][:, :1], prefix_hat) and not torch.equal(prefix_hat, f[:, :1])
    assert torch.allclose(out["bits"], grid_bits + prefix_bits)
    sent = Device(model, codec).encode(IMAGES[:2], q=2.0)
    assert [len(PrefixTokens.parts(f[i:i + 1, :1])[0]) * 8 for i in range(2)] == prefix_bits.tolist()
    decoded = flow.receiver_side.decode(sent.data)                 # the receiver gets the same prefix
    assert torch.equal(decoded[:, :1], prefix_hat)
    assert torch.allclose(decoded[:, 1:], out["features_hat"][:, 1:], atol=1e-5)  # and the same grid
    f.requires_grad_(True)
    hat, _ = PrefixTokens.train_roundtrip(f[:, :1])
    hat.sum().backward()
    assert torch.equal(f.grad[:, :1], torch.ones_like(f[:, :1]))  # straight-through gradient


def test_a_learned_codec_runs_only_at_the_split_it_was_trained_for_and_picks_it_by_default():
    from intelliflow.codec import resolve_codec
    from intelliflow.flow.endpoints import Receiver, split_for
    from intelliflow.models import load_split_model

    codec = resolve_codec("shapes-hyperprior")                  # trained for shapes-captioner at split 4
    assert split_for(codec, "shapes-captioner", None) == 4
    assert split_for(codec, "shapes-captioner", 2) == 2          # what the user asks for wins, then is checked
    assert split_for(codec, "another-model", None) is None       # a codec trained for another model sets nothing
    assert split_for(resolve_codec("quantize-8"), "shapes-captioner", None) is None  # fixed codecs code any split
    model = load_split_model("shapes-captioner", split=2)
    for side in (Device, Receiver, lambda m, c: Flow(m, c)):
        with pytest.raises(ConfigError, match="trained for split 4 .* split at 2: load the model with split=4"):
            side(model, codec)
    Device(model, resolve_codec("quantize-8"))                   # no trained split: any split point
    image = make_sample("test", 0).image
    assert Device(load_split_model("shapes-captioner", split=4), codec).encode([image], q=2.0).bits[0] > 0
