"""A learned image codec for the information-flow baseline: "the best image codec + 5G LDPC".

CompressAI's ``ScaleHyperprior``, the architecture of its model zoo's ``bmshj2018-hyperprior``
(Ballé et al. 2018: GDN analysis and synthesis transforms, a scale hyperprior), trained for MSE
on ``shapes`` images with CompressAI's rate-distortion objective (``training/image_codec.py``,
``recipes/shapes/image_codec_*.yaml``). It is used exactly like JPEG: the device sends the
image's bitstream, the receiver decodes the picture and runs the whole captioner. Each shipped
checkpoint is one trade-off (one ``lmbda``), as JPEG's quality is: ``shapes-bmshj2018-1`` (fewest
bits, lmbda 0.0035) to ``shapes-bmshj2018-5`` (lmbda 0.05).

Payload: the header and integrity check of :mod:`intelliflow.codec.bitstream` (byte 2, 3: the
latent grid; 6 bytes in all, counted in the rate), then the picture's height and width and the
hyper-latent's length (varints), then CompressAI's two rANS streams (``z`` and ``y``).

>>> import torch
>>> from PIL import Image
>>> codec = LearnedImageCodec(LearnedImageConfig(N=8, M=8)).eval()
>>> _ = codec.update()
>>> payload = codec.encode([Image.new("RGB", (64, 48), "red")])[0]
>>> picture = codec.decode([payload])[0]
>>> picture.size, codec.family
((64, 48), 'bytes')
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

with warnings.catch_warnings():  # compressai 1.2.6's video models use deprecated torch APIs at import time
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.models import ScaleHyperprior

from intelliflow.errors import BitstreamError, ConfigError

from . import bitstream
from .interface import Codec, check_batch
from .registry import register_codec

STRIDE = 64           # g_a then h_a downsample by 2^4 and 2^2: pictures are padded to a multiple of 64
MAX_SIDE = 1024       # the largest picture side coded (a forged header could claim more: 4096 would cost GBs)


@dataclass
class LearnedImageConfig:
    """``N``: channels of the transforms; ``M``: latent channels (CompressAI's names);
    ``lmbda``: the rate-distortion trade-off it was trained for (recorded, not used in coding)."""

    N: int = 64
    M: int = 96
    lmbda: float = 0.01

    def __post_init__(self):
        for key in ("N", "M"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
                raise ConfigError(f"learned image codec: {key} must be an integer in 1..1024, got {value!r}")
        if not float(self.lmbda) > 0:
            raise ConfigError(f"learned image codec: lmbda must be positive, got {self.lmbda!r}")


def to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL images of one size -> [B, 3, H, W] float in [0, 1]."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
    if len({a.shape for a in arrays}) > 1:
        raise ConfigError(f"a batch of pictures must share one size, got {sorted({a.shape[:2] for a in arrays})}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_images(x: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [0, 1] -> 8-bit PIL images."""
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p, "RGB") for p in pixels]


@register_codec("bmshj2018", config=LearnedImageConfig, payload_id=4)
class LearnedImageCodec(ScaleHyperprior, Codec):
    """CompressAI's bmshj2018 scale hyperprior, trained for MSE on pictures: an image-upload baseline."""

    takes, sends = "image", "bytes"
    learned = True

    def __init__(self, config: LearnedImageConfig | None = None):
        self.config = config or LearnedImageConfig()
        super().__init__(N=self.config.N, M=self.config.M)
        self._fingerprint: bytes | None = None

    @property
    def family(self) -> str:
        """``bytes``: an information-flow baseline (the picture goes up), not a feature codec."""
        return "bytes"

    @property
    def fingerprint(self) -> bytes:
        """Digest of the configuration, weights and entropy tables; enters every payload's CRC."""
        if self._fingerprint is None:
            tensors = [t for _, t in sorted(self.state_dict().items())]
            self._fingerprint = bitstream.fingerprint(self.registered_name, json.dumps(asdict(self.config),
                                                                                       sort_keys=True), *tensors)
        return self._fingerprint

    def update(self, scale_table=None, force: bool = True, update_quantiles: bool = False) -> bool:
        """Build the entropy coder's tables (after training, before coding)."""
        self._fingerprint = None
        return super().update(scale_table=scale_table, force=force, update_quantiles=update_quantiles)

    def load_state_dict(self, state_dict, strict: bool = True):
        self._fingerprint = None
        return super().load_state_dict(state_dict, strict=strict)

    def _tables_ready(self) -> None:
        if self.gaussian_conditional._quantized_cdf.numel() == 0:
            raise ConfigError("the codec's entropy tables are not built: call codec.update() after training")

    @staticmethod
    def pad(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Replicate-pad [B, 3, H, W] to multiples of 64; returns the padded pictures and (H, W)."""
        h, w = x.shape[-2:]
        ph, pw = -h % STRIDE, -w % STRIDE
        return (F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x), (h, w)

    @torch.no_grad()
    def encode(self, images: Sequence[Image.Image], target_bytes: Any = None, **_) -> list[bytes]:
        """Device side: PIL images -> one self-contained payload each."""
        if target_bytes is not None:
            raise ConfigError(f"{self.name} codes at the one trade-off it was trained for: it takes no byte budget")
        images = check_batch(images, "encode")
        self._tables_ready()
        device = next(self.parameters()).device
        payloads = []
        for image in images:   # pictures of a batch may differ in size
            x, (h, w) = self.pad(to_tensor([image]).to(device))
            if max(h, w) > MAX_SIDE:
                raise ConfigError(f"picture of {w}x{h} is over the codec's {MAX_SIDE}-pixel side")
            out = self.compress(x)
            (y,), (z,) = out["strings"]
            gh, gw = x.shape[-2] // 16, x.shape[-1] // 16
            body = bitstream.write_varint(h) + bitstream.write_varint(w) + bitstream.write_varint(len(z)) + z + y
            payloads.append(bitstream.pack(self.payload_id, 0, gh, gw, body, self.fingerprint))
        return payloads

    @torch.no_grad()
    def decode(self, payloads: Sequence[bytes], **_) -> list[Image.Image]:
        """Receiver side: payloads -> PIL images; damaged or foreign payloads raise :class:`BitstreamError`."""
        payloads = check_batch(payloads, "decode")
        self._tables_ready()
        pictures = []
        for data in payloads:
            packet = bitstream.unpack(data, self.payload_id, self.fingerprint)
            h, pos = bitstream.read_varint(packet.body, 0)
            w, pos = bitstream.read_varint(packet.body, pos)
            nz, pos = bitstream.read_varint(packet.body, pos)
            if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE) or (-(-h // STRIDE) * 4, -(-w // STRIDE) * 4) != \
                    (packet.height, packet.width) or pos + nz > len(packet.body):
                raise BitstreamError(f"payload header is inconsistent: picture {w}x{h}, latent grid "
                                     f"{packet.width}x{packet.height}, hyper-latent of {nz} bytes")
            z, y = packet.body[pos:pos + nz], packet.body[pos + nz:]
            out = self.decompress([[y], [z]], (packet.height // 4, packet.width // 4))
            pictures.extend(to_images(out["x_hat"][..., :h, :w]))
        return pictures
