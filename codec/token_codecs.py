"""Token codecs: features coded token by token, for features that lie on no grid.

Q-Former queries, merged tokens or an LLM's image tokens have no spatial neighbours for a
convolution to exploit. These codecs treat the features ``[B, D, H, W]`` (the one codec interface;
tokens on no grid lie as one row, ``H = 1``) as ``N = H * W`` tokens and code each on its own, so
they also run on the grid models' features.

:class:`RVQTokenCodec` (after Q-TOFC): a per-token analysis MLP maps each token to a latent,
residual vector quantisation with ``codebooks`` stages of ``codebook_size`` code vectors codes it
(stage ``m`` quantises what stages ``0 .. m-1`` left), a learned prior per stage (a categorical
distribution over its code vectors) entropy-codes the indices, and a synthesis MLP maps the
summed code vectors back::

    token ─► g_a ─► y ─► RVQ stages 0 .. s-1 ─► indices ─► entropy coder (prior of stage m) ─► bytes
    token̂ ◄─ g_s ◄─ ŷ = Σ code vectors ◄──────────┘

The rate point ``q`` sets the stages: ``s = floor(q) + 1`` of ``codebooks`` (variable rate: one
trained codec, every stage count). Indices are integers, so the decoder's ``ŷ`` is the encoder's
exactly, on any machine; ``decompress`` returns what the eval ``forward`` returns. Training uses
the straight-through estimator with VQ-VAE's codebook and commitment losses (the codec's
``aux_loss``), code vectors initialised from the first training batch's residuals, and the priors
learned by the rate term itself (bits = ``-log2 p(index)``).

>>> import torch
>>> codec = RVQTokenCodec(RVQCodecConfig(in_channels=16, hidden_channels=32, latent_channels=8,
...                                      codebooks=4, codebook_size=16)).eval()
>>> _ = codec.update()
>>> features = torch.randn(2, 16, 1, 10)             # 10 tokens on no grid
>>> payloads = codec.encode(features, q=2)           # 3 stages of 4
>>> torch.equal(codec.decode(payloads), codec(features, q=2)["f_hat"])
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from intelliflow.errors import BitstreamError, ConfigError

from . import bitstream
from .digital import FeatureCodec
from .entropy_coding import ENTROPY_CODERS, Tables, entropy_coder
from .interface import check_batch, check_expected
from .registry import register_codec
from .tokens import _quantized_cdf

#: probability kept for the escape symbol of every prior's table (never coded: indices are in range)
ESCAPE = 1e-9


@dataclass
class RVQCodecConfig:
    """Sizes of a residual-VQ token codec. ``q`` runs over ``0 .. codebooks - 1`` (stages - 1)."""

    in_channels: int = 192
    hidden_channels: int = 256
    latent_channels: int = 32
    codebooks: int = 8
    codebook_size: int = 256
    #: VQ-VAE's commitment weight (the encoder's pull towards its code vectors)
    commitment: float = 0.25
    entropy_coder: str = "arithmetic"

    def __post_init__(self):
        for name in ("in_channels", "hidden_channels", "latent_channels", "codebooks", "codebook_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"codec {name} must be a positive integer, got {str(value)[:20]}")
        if self.codebooks > 16:
            raise ConfigError(f"codec codebooks must be at most 16 (the header stores q in 1/16 steps), "
                              f"got {self.codebooks}")
        if not 2 <= self.codebook_size <= 4096:
            raise ConfigError(f"codec codebook_size must be in 2..4096, got {self.codebook_size}")
        if self.entropy_coder not in ENTROPY_CODERS:
            raise ConfigError(f"codec entropy_coder must be one of {', '.join(ENTROPY_CODERS)}, "
                              f"got {self.entropy_coder!r}")

    # what the shared feature-codec machinery reads
    @property
    def rate_points(self) -> int:
        return self.codebooks

    downsample = 0
    mean_grid = None


def _mlp(width_in: int, hidden: int, width_out: int) -> nn.Sequential:
    """A per-token MLP on a grid [B, C, H, W] (1x1 convolutions)."""
    return nn.Sequential(nn.Conv2d(width_in, hidden, 1), nn.GELU(), nn.Conv2d(hidden, hidden, 1), nn.GELU(),
                         nn.Conv2d(hidden, width_out, 1))


@register_codec("rvq-tokens", config=RVQCodecConfig, payload_id=5)
class RVQTokenCodec(FeatureCodec):
    """Residual-VQ token codec (see the module docstring)."""

    def __init__(self, config: RVQCodecConfig | None = None):
        nn.Module.__init__(self)   # CompressionModel's own init builds nothing this codec uses
        self.config = c = config or RVQCodecConfig()
        self.g_a = _mlp(c.in_channels, c.hidden_channels, c.latent_channels)
        self.g_s = _mlp(c.latent_channels, c.hidden_channels, c.in_channels)
        self.codebook = nn.Parameter(torch.randn(c.codebooks, c.codebook_size, c.latent_channels) * 0.1)
        self.prior_logits = nn.Parameter(torch.zeros(c.codebooks, c.codebook_size))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        #: how often each code vector is chosen (moving average over training batches)
        self.register_buffer("usage", torch.ones(c.codebooks, c.codebook_size))
        self.coder = entropy_coder(c.entropy_coder)
        self._fingerprint = None
        self._coding_tables = None

    # ------------------------------------------------------------------ rate points
    def stages(self, q: torch.Tensor) -> torch.Tensor:
        """Stages used at rate points ``q`` [B]: ``floor(q) + 1`` [B] long."""
        return q.floor().long().clamp(0, self.config.codebooks - 1) + 1

    # ------------------------------------------------------------------ quantisation
    def _tokens(self, f: torch.Tensor) -> torch.Tensor:
        y = self.g_a(f)                                    # [B, d, H, W]
        return y.flatten(2).transpose(1, 2)                # [B, N, d]

    def _features(self, y_hat: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, d = y_hat.shape
        return self.g_s(y_hat.transpose(1, 2).reshape(b, d, *grid))

    @torch.no_grad()
    def _initialise(self, tokens: torch.Tensor) -> None:
        """Code vectors from the first training batch: each stage's are residuals of that stage."""
        residual = tokens.detach().reshape(-1, tokens.shape[-1])
        k = self.config.codebook_size
        for m in range(self.config.codebooks):
            pick = torch.randint(0, residual.shape[0], (k,), device=residual.device)
            self.codebook[m].copy_(residual[pick] + 1e-3 * torch.randn_like(residual[pick]))
            nearest = torch.cdist(residual, self.codebook[m]).argmin(-1)
            residual = residual - self.codebook[m][nearest]
        self.initialised.fill_(True)

    @torch.no_grad()
    def _revive(self, indices: torch.Tensor, residuals: list[torch.Tensor], decay: float = 0.95) -> None:
        """Code vectors no batch has chosen for a while move onto residuals of this batch (as
        Encodec replaces expired codes), so that every stage keeps all its code vectors in use."""
        k = self.config.codebook_size
        for m, residual in enumerate(residuals):
            counts = torch.bincount(indices[:, m].reshape(-1), minlength=k).float()
            self.usage[m].mul_(decay).add_((1 - decay) * counts / counts.sum() * k)
            dead = (self.usage[m] < 0.03).nonzero().flatten()
            if dead.numel():
                pool = residual.detach().reshape(-1, residual.shape[-1])
                pick = torch.randint(0, pool.shape[0], (dead.numel(),), device=pool.device)
                self.codebook.data[m, dead] = pool[pick]
                self.usage[m, dead] = 1.0

    def quantise(self, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Latent tokens [B, N, d] -> (indices [B, M, N] of every stage, residuals before each stage)."""
        residual, indices, residuals = tokens, [], []
        for m in range(self.config.codebooks):
            residuals.append(residual)
            book = self.codebook[m]
            distance = (residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(-1))
            index = distance.argmin(-1)                       # [B, N]
            indices.append(index)
            residual = residual - book[index].detach()
        return torch.stack(indices, 1), residuals

    def dequantise(self, indices: torch.Tensor, stages: Sequence[int]) -> torch.Tensor:
        """Indices [B, M', N] and the stages of each image -> ŷ [B, N, d], summed stage by stage
        (the encoder's and the decoder's sums are the same operations)."""
        rows = []
        for i, s in enumerate(stages):
            y = self.codebook[0][indices[i, 0]]
            for m in range(1, int(s)):
                y = y + self.codebook[m][indices[i, m]]
            rows.append(y)
        return torch.stack(rows)

    # ------------------------------------------------------------------ training / estimation
    def forward(self, f: torch.Tensor, q=None) -> dict:
        """``{"f_hat" [B, D, H, W], "likelihoods": {"indices": [B, M, N]}, "vq_loss", "indices"}``.

        In training mode ``ŷ`` passes the gradient straight through to the encoder; in eval mode
        ``f_hat`` is what ``decompress(compress(f, q))`` returns. Likelihoods of unused stages are 1.
        """
        self._check_features(f)
        stages = self.stages(self._q_tensor(q, f.shape[0], f.device))
        if self.training:   # the priors and code vectors move: tables and fingerprint are rebuilt when next needed
            self._fingerprint = self._coding_tables = None
        tokens = self._tokens(f)
        if self.training and not bool(self.initialised):
            self._initialise(tokens)
        indices, residuals = self.quantise(tokens)
        if self.training:
            self._revive(indices, residuals)
        used = torch.arange(self.config.codebooks, device=f.device)[None, :] < stages[:, None]     # [B, M]
        y_hat = self.dequantise(indices, stages.tolist())
        vq_loss = tokens.new_zeros(())
        if self.training:
            for m, residual in enumerate(residuals):
                chosen = self.codebook[m][indices[:, m]]
                per_image = ((residual.detach() - chosen).pow(2).mean((1, 2))
                             + self.config.commitment * (residual - chosen.detach()).pow(2).mean((1, 2)))
                vq_loss = vq_loss + (per_image * used[:, m]).mean()
            y_hat = tokens + (y_hat - tokens).detach()        # straight through
        log_prior = F.log_softmax(self.prior_logits, -1)     # [M, K]
        log_p = torch.gather(log_prior[None].expand(f.shape[0], -1, -1), 2, indices)      # [B, M, N]
        likelihoods = torch.where(used[:, :, None], log_p.exp(), torch.ones_like(log_p))
        return {"f_hat": self._features(y_hat, tuple(f.shape[-2:])), "likelihoods": {"indices": likelihoods},
                "vq_loss": vq_loss, "indices": indices, "stages": stages}

    def train_pass(self, grid: torch.Tensor, q=None, **_) -> dict:
        coded = self(grid, q)
        return {"f_hat": coded["f_hat"], "likelihoods": coded["likelihoods"],
                "bits": self.likelihood_bits(coded["likelihoods"]), "aux_loss": coded["vq_loss"]}

    def aux_loss(self) -> torch.Tensor:
        return self.codebook.new_zeros(())

    # ------------------------------------------------------------------ entropy coding tables
    def update(self, scale_table=None, force: bool = True, update_quantiles: bool = False) -> bool:
        """Build the priors' coding tables now (``compress`` and ``decompress`` build them when
        first needed, after loading or training)."""
        self._fingerprint, self._coding_tables = None, {}
        pmf = F.softmax(self.prior_logits.detach().double(), -1).cpu()
        cdfs = [_quantized_cdf([*row.tolist(), ESCAPE]) for row in pmf]
        self._coding_tables["prior"] = Tables(cdfs, [len(row) for row in cdfs], [0] * len(cdfs))
        return True

    def load_state_dict(self, state_dict, strict: bool = True):
        result = nn.Module.load_state_dict(self, state_dict, strict=strict)
        self._fingerprint, self._coding_tables = None, None
        return result

    def _tables_ready(self) -> None:
        """The tables follow from the priors: built when first needed (after loading, or training)."""
        if not self._coding_tables:
            self.update()

    def tables(self, name: str = "prior") -> Tables:
        self._tables_ready()
        return self._coding_tables[name]

    # ------------------------------------------------------------------ bitstreams
    def _compress_q16(self, f: torch.Tensor, q16: torch.Tensor, stream=None, side=None) -> list[bytes]:
        stages = self.stages(q16.float() / 16)
        indices, _ = self.quantise(self._tokens(f))
        h, w = f.shape[-2:]
        out = []
        for i in range(f.shape[0]):
            s = int(stages[i])
            symbols = indices[i, :s].reshape(-1).tolist()
            rows = torch.arange(s).repeat_interleave(indices.shape[2]).tolist()
            encoder = self.coder.encoder()
            encoder.encode(symbols, rows, self.tables())
            if side is not None:
                side[i](encoder)
            out.append(bitstream.pack(self.payload_id, int(q16[i]), h, w, encoder.finish(), self.fingerprint, stream))
        return out

    @torch.no_grad()
    def decompress(self, payloads: Sequence[bytes], expected: tuple[int, int, int] | None = None,
                   stream: bitstream.StreamContext | None = None, side=None) -> torch.Tensor:
        """Payloads -> features [B, D, H, W], every image on the same grid; damaged or foreign
        payloads raise :class:`BitstreamError`."""
        payloads = check_batch(payloads, "decompress")
        self._tables_ready()
        if expected is not None and expected[0] != self.config.in_channels:
            raise ConfigError(f"this codec codes {self.config.in_channels}-wide features, the receiver expects "
                              f"{expected[0]}")
        grids, stages, indices = set(), [], []
        for data in payloads:
            packet = bitstream.unpack(data, self.payload_id, self.fingerprint, stream)
            if packet.q16 > self.max_q * 16:
                raise BitstreamError(f"rate point {packet.q} is beyond this codec's maximum {self.max_q}")
            grid = (packet.height, packet.width)
            check_expected(grid, None if expected is None else tuple(expected[1:]), "a feature grid of")
            grids.add(grid)
            s, n = int(self.stages(torch.tensor([packet.q16 / 16]))[0]), grid[0] * grid[1]
            decoder = self.coder.decoder(packet.body)
            values = decoder.decode(torch.arange(s).repeat_interleave(n).tolist(), self.tables())
            if side is not None:
                side(decoder)
            if max(values) >= self.config.codebook_size:
                raise BitstreamError("the payload holds an index beyond the codebook")
            full = torch.zeros(self.config.codebooks, n, dtype=torch.long)
            full[:s] = torch.tensor(values, dtype=torch.long).view(s, n)
            stages.append(s)
            indices.append(full)
        if len(grids) > 1:
            raise BitstreamError(f"payloads of one batch declare different grids: {sorted(grids)}")
        device = self.codebook.device
        y_hat = self.dequantise(torch.stack(indices).to(device), stages)
        return self._features(y_hat, grids.pop())

    def index_bits(self) -> float:
        """Bits of one index at a uniform prior (``log2 codebook_size``), for comparison."""
        return math.log2(self.config.codebook_size)
