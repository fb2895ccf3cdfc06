"""Deep JSCC: unit-energy symbols, SNR-adaptive decoding, gradients through the Sionna channels."""

import pytest
import torch

from intelliflow.channels import build_channel
from intelliflow.codec import build_codec
from intelliflow.errors import ShapeError


def small_codec():
    torch.manual_seed(0)
    return build_codec({"name": "jscc", "in_channels": 16, "hidden_channels": 24, "symbol_channels": 2})


def test_symbols_have_unit_mean_energy_per_image_and_the_stated_count():
    codec = small_codec()
    f = torch.randn(5, 16, 8, 8) * torch.arange(1, 6).view(5, 1, 1, 1)
    x = codec.encode(f, snr_db=torch.tensor([0.0, 5.0, 10.0, 15.0, 20.0]))
    assert x.is_complex() and x.shape == (5, codec.channel_uses(8, 8)) == (5, 2 * 4 * 4)
    assert torch.allclose(x.abs().pow(2).mean(dim=1), torch.ones(5), atol=1e-5)


@pytest.mark.parametrize("channel", [{"name": "awgn"}, {"name": "rayleigh", "csi": "estimated"}])
def test_gradients_reach_the_features_through_the_channel(channel):
    codec = small_codec()
    f = torch.randn(3, 16, 8, 8, requires_grad=True)
    out = build_channel(channel)(codec.encode(f, 5.0), 5.0)
    f_hat = codec.decode(out.y, 5.0, noise=out.no_eff, grid=(8, 8))
    assert f_hat.shape == f.shape
    ((f_hat - f) ** 2).mean().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    assert codec.enc_in.weight.grad.abs().sum() > 0


def test_trained_through_awgn_it_degrades_gracefully_with_snr():
    codec = small_codec()
    channel = build_channel("awgn")
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    basis = torch.randn(4, 16, 8, 8, generator=g)  # features on a 4-dimensional manifold
    for step in range(150):
        f = torch.einsum("bk,kchw->bchw", torch.randn(16, 4, generator=g), basis)
        snr = torch.rand(16, generator=g) * 20
        out = channel(codec.encode(f, snr), snr)
        loss = ((codec.decode(out.y, snr, noise=out.no_eff, grid=(8, 8)) - f) ** 2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    f = torch.einsum("bk,kchw->bchw", torch.randn(64, 4, generator=g), basis)
    with torch.no_grad():
        errors = {}
        for snr in (0.0, 20.0):
            out = channel(codec.encode(f, snr), snr)
            errors[snr] = ((codec.decode(out.y, snr, noise=out.no_eff, grid=(8, 8)) - f) ** 2).mean().item()
    assert errors[20.0] < errors[0.0] < f.pow(2).mean().item()


def test_shape_errors():
    codec = small_codec()
    with pytest.raises(ShapeError, match=r"\[B, 16, H, W\]"):
        codec.encode(torch.randn(1, 15, 8, 8), 5.0)
    with pytest.raises(ShapeError, match="complex"):
        codec.decode(torch.randn(1, 32), 5.0, grid=(8, 8))
    with pytest.raises(ShapeError, match="do not fit"):
        codec.decode(torch.randn(1, 31, dtype=torch.complex64), 5.0, grid=(8, 8))


def test_decoding_is_stateless_the_receiver_names_the_grid():
    sender, receiver = small_codec(), small_codec()
    receiver.load_state_dict(sender.state_dict())            # the same weights, nothing encoded on this side
    x = sender.encode(torch.randn(2, 16, 8, 8), 10.0)
    assert torch.equal(receiver.decode(x, 10.0, grid=(8, 8)), sender.decode(x, 10.0, grid=(8, 8)))
    with pytest.raises(ShapeError, match="grid"):
        receiver.decode(x, 10.0)


@pytest.mark.parametrize("downsample", [1, 2])
@pytest.mark.parametrize("size", [(27, 27), (37, 37)])
def test_any_grid_size_is_padded_to_the_stride_and_cropped_back(size, downsample):
    """A 27 x 27 or 37 x 37 grid sends ceil(H / stride) x ceil(W / stride) positions of symbols and
    comes back at its own size; over a noiseless link the decoder sees exactly what was sent."""
    torch.manual_seed(0)
    codec = build_codec({"name": "jscc", "in_channels": 16, "hidden_channels": 24, "symbol_channels": 2,
                         "downsample": downsample})
    f = torch.randn(2, 16, *size)
    x = codec.encode(f, 10.0)
    step = 2 ** downsample
    assert x.shape == (2, codec.channel_uses(*size)) == (2, 2 * -(-size[0] // step) * -(-size[1] // step))
    f_hat = codec.decode(x, 10.0, grid=size)
    assert f_hat.shape == f.shape
    assert torch.allclose(codec.decode(x[:1], 10.0, grid=size), f_hat[:1], atol=1e-6)
    with pytest.raises(ShapeError, match="do not fit"):
        codec.decode(x, 10.0, grid=(size[0] + step, size[1]))
