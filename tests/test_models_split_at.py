"""split_at: plug a codec and channel into any torch model after a named submodule."""

import pytest
import torch
import torchvision

from intelliflow.errors import ConfigError
from intelliflow.models import split_at


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def test_identity_transform_gives_the_unsplit_output(resnet):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = resnet(x)
        with split_at(resnet, "layer2", transform=lambda t: t.clone()) as split:
            out = resnet(x)
    assert torch.equal(out, reference)
    assert split.features.shape == (2, 128, 8, 8) and split.calls == 1


def test_the_transform_really_sits_in_the_path_and_is_removed_on_exit(resnet):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = resnet(x)
        with split_at(resnet, "layer3", transform=torch.zeros_like):
            zeroed = resnet(x)
        after = resnet(x)
    assert not torch.allclose(zeroed, reference)
    assert torch.allclose(zeroed, zeroed[:1].expand_as(zeroed))  # the input no longer matters
    assert torch.equal(after, reference)


def test_gradients_flow_back_through_the_transform(resnet):
    scale = torch.tensor(1.0, requires_grad=True)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    with split_at(resnet, "layer1", transform=lambda t: t * scale):
        resnet(x).sum().backward()
    assert scale.grad is not None and x.grad is not None and x.grad.abs().sum() > 0


def test_clear_errors(resnet):
    with pytest.raises(ConfigError, match="no submodule 'layer9'"):
        split_at(resnet, "layer9")
    with pytest.raises(ConfigError, match="changed the shape"):
        with split_at(resnet, "layer1", transform=lambda t: t[:, :3]):
            resnet(torch.randn(1, 3, 32, 32))
