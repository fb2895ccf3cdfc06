"""CodecLink: a codec and a channel in any torch model's forward pass (split_at's transform)."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from intelliflow.codec import build_codec
from intelliflow.errors import ConfigError, ShapeError
from intelliflow.flow import CodecLink
from intelliflow.flow.bridge import feature_layout
from intelliflow.models import split_at


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=6).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def run(model, path, link, x):
    with split_at(model, path, transform=link) as split, torch.no_grad():
        return model(x), split


def small_hyperprior(width=128):
    torch.manual_seed(0)
    return build_codec({"name": "hyperprior", "in_channels": width, "hidden_channels": 16, "latent_channels": 8,
                        "hyper_channels": 8})


def test_identity_is_the_unsplit_model_and_bits_are_the_payloads(resnet, images):
    reference = resnet(images)
    link = CodecLink("identity")
    logits, split = run(resnet, "layer2", link, images)
    assert torch.equal(logits, reference)
    assert split.features.shape == (3, 128, 4, 4)
    assert link.last.bits == [8 * len(p) for p in link.last_sent.data] == [8 * (4 + 4 * 128 * 16)] * 3
    assert link.last.channel_uses == [None] * 3 and link.last.lost == [False] * 3 and not link.last.estimated


def test_coarser_quantisation_costs_fewer_bits_and_moves_the_logits_further(resnet, images):
    reference = resnet(images)
    errors, bits = {}, {}
    for b in (8, 2):
        link = CodecLink(f"quantize-{b}")
        logits, _ = run(resnet, "layer2", link, images)
        assert link.last.bits == [8 * len(p) for p in link.last_sent.data]
        errors[b] = (logits - reference).abs().max().item()
        bits[b] = link.last.bits_per_sample
    assert 0 < errors[8] < 0.02 * reference.abs().max().item() and errors[8] < errors[2] / 10
    assert bits[2] < bits[8] < 8 * 4 * 128 * 16 / 2


def test_training_mode_passes_gradients_to_the_codec_and_eval_mode_codes_real_bits(resnet, images):
    codec = small_hyperprior()
    link = CodecLink(codec, q=3.0)
    assert link.training   # an untrained codec: the link starts in training mode
    with split_at(resnet, "layer2", transform=link):
        logits = resnet(images)
        assert link.last.estimated and link.last_pass["bits"].requires_grad
        logits.logsumexp(1).sum().backward()
        assert all(p.grad is not None for p in codec.g_a.parameters())
        link.eval()            # builds the entropy tables
        with torch.no_grad():
            resnet(images)
    f, received = link.last_pass, None
    assert f is None and not link.last.estimated
    assert link.last.bits == [8 * len(p) for p in link.last_sent.data]
    with split_at(resnet, "layer2", transform=link) as split, torch.no_grad():
        resnet(images)
        received = split.received
        expected = codec(split.features, 3.0)["f_hat"]        # eval forward: rounding, as the payload
    assert torch.allclose(received, expected, atol=1e-4)
    assert link.totals.forwards == 3 and link.totals.samples == 9


def test_symbols_go_through_the_channel_at_their_snr(resnet, images):
    torch.manual_seed(0)
    codec = build_codec({"name": "jscc", "in_channels": 128, "hidden_channels": 16, "symbol_channels": 4}).eval()
    spread = {}
    for snr in (30.0, -5.0):
        link = CodecLink(codec, "awgn", snr_db=snr, symbols=2)
        received = [run(resnet, "layer2", link, images)[1].received for _ in range(2)]
        spread[snr] = (received[0] - received[1]).pow(2).mean().item()   # two noise draws
        assert link.last.channel_uses == [codec.channel_uses(4, 4, 2)] * 3 and link.last.bits is None
    assert spread[30.0] < 0.01 * spread[-5.0]


def test_byte_payloads_ride_the_digital_link_and_a_lost_one_leaves_zeros():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).eval()
    x = torch.rand(2, 3, 16, 16)
    link = CodecLink("quantize-4", "awgn", snr_db=25.0, mcs=9, link={"max_transmissions": 1})
    _, split = run(net, "1", link, x)
    digital = link.flow.link
    assert link.last.lost == [False, False] and link.last.mcs == [9, 9]
    assert link.last.channel_uses == [digital.channel_uses(len(p), 9) for p in link.last_sent.data]
    assert torch.allclose(split.received, split.features, atol=0.05 * split.features.max().item())
    link.snr_db = -10.0
    _, split = run(net, "1", link, x)
    assert link.last.lost == [True, True] and torch.equal(split.received, torch.zeros_like(split.features))
    assert link.totals.lost == 2 and link.totals.channel_uses == sum(link.last.channel_uses) * 2


def test_tokens_with_a_cls_token_and_vectors():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                            num_classes=6).eval()
    nn.init.normal_(vit.heads.head.weight)     # torchvision starts the head at zero
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        reference = vit(x)
    link = CodecLink("identity")
    logits, split = run(vit, "encoder.layers.encoder_layer_0", link, x)
    assert split.features.shape == (2, 17, 16)                                   # CLS + a 4x4 grid
    assert torch.equal(split.received[:, 1:], split.features[:, 1:])             # the grid: exact
    cls_error = (split.received[:, 0] - split.features[:, 0]).abs().max()        # the CLS token: 8-bit, counted
    assert 0 < cls_error < 0.01 * split.features[:, 0].abs().max()
    assert link.last.bits == [8 * len(p) for p in link.last_sent.data]
    assert link.last.bits[0] > 8 * (4 + 4 * 16 * 16) + 8 * 16                   # grid payload + the 16 CLS bytes
    assert torch.allclose(logits, reference, atol=0.1) and not torch.equal(logits, reference)

    mlp = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
    v = torch.randn(5, 10)
    link = CodecLink("identity")
    out, split = run(mlp, "1", link, v)
    assert split.features.shape == (5, 32) and torch.equal(out, mlp(v).detach())
    assert link.last.bits == [8 * (4 + 4 * 32)] * 5


def test_feature_layouts_and_clear_errors(resnet, images):
    assert feature_layout((2, 51, 8), grid=(5, 10)) == ((5, 10), 1)
    with pytest.raises(ShapeError, match="give the grid"):
        feature_layout((2, 51, 8))
    with pytest.raises(ShapeError, match="51 tokens do not hold a 6x10 grid"):
        feature_layout((2, 51, 8), grid=(6, 10))
    with pytest.raises(ShapeError, match="tokens \\[B, N, D\\] or vectors"):
        feature_layout((2, 3, 4, 5, 6))
    with pytest.raises(ConfigError, match="takes images"):
        CodecLink("jpeg-30")
    with pytest.raises(ConfigError, match="needs an SNR"):
        run(resnet, "layer2", CodecLink("quantize-8", "awgn"), images)
    with pytest.raises(ShapeError, match="features must be \\[B, 64, H, W\\]"):
        run(resnet, "layer2", CodecLink(small_hyperprior(64).eval()), images)
    with pytest.raises(ShapeError, match="float features"):
        CodecLink("identity")(torch.ones(1, 2, 3, 3, dtype=torch.long))
