"""Token codecs: residual VQ with learned priors: real bitstreams, bit-exact decoding on any token
layout, variable rate, rate accounting, fuzzing, side messages, training."""

import random
import time

import pytest
import torch

from intelliflow.codec import build_codec
from intelliflow.codec.entropy_coding import entropy_coder
from intelliflow.codec.token_codecs import RVQCodecConfig, RVQTokenCodec
from intelliflow.errors import BitstreamError, ConfigError, ShapeError

CONFIG = RVQCodecConfig(in_channels=24, hidden_channels=48, latent_channels=8, codebooks=4, codebook_size=32)


def tokens(batch=6, grid=(1, 12), seed=0):
    """Features on a few clusters (as real tokens are), laid out [B, D, H, W]."""
    centres = torch.randn(5, CONFIG.in_channels, generator=torch.Generator().manual_seed(0)) * 2
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, 5, (batch, grid[0] * grid[1]), generator=g)
    x = centres[pick] + 0.3 * torch.randn(batch, grid[0] * grid[1], CONFIG.in_channels, generator=g)
    return x.transpose(1, 2).reshape(batch, CONFIG.in_channels, *grid)


def runs(batch=6, grid=(4, 8), seed=0):
    """Features whose tokens repeat their left neighbour's cluster in runs (as a plain background
    does), laid out [B, D, H, W]."""
    centres = torch.randn(5, CONFIG.in_channels, generator=torch.Generator().manual_seed(0)) * 2
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, 5, (batch, grid[0] * grid[1]), generator=g)
    keep = torch.rand(batch, grid[0] * grid[1], generator=g) < 0.8
    for t in range(1, grid[0] * grid[1]):
        pick[:, t] = torch.where(keep[:, t], pick[:, t - 1], pick[:, t])
    x = centres[pick] + 0.3 * torch.randn(batch, grid[0] * grid[1], CONFIG.in_channels, generator=g)
    return x.transpose(1, 2).reshape(batch, CONFIG.in_channels, *grid)


def fitted(steps=120, seed=0, data=tokens, config=CONFIG):
    torch.manual_seed(seed)
    codec = RVQTokenCodec(config)
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    for step in range(steps):
        f = data(8, seed=step + 100)
        out = codec.train_pass(f, q=torch.rand(8) * codec.max_q)
        loss = 1e-3 * out["bits"].mean() + ((out["f_hat"] - f) ** 2).mean() + out["aux_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    codec.eval().update()
    return codec


@pytest.fixture(scope="module")
def codec():
    return fitted()


@pytest.mark.parametrize("grid", [(1, 12), (4, 4), (1, 1), (3, 7)])
def test_decoding_is_bit_exact_and_equals_the_eval_forward(codec, grid):
    f = tokens(5, grid)
    for q in (0, 1.5, 3):
        payloads = codec.encode(f, q=q)
        decoded = codec.decode(payloads, expected=(CONFIG.in_channels, *grid))
        assert decoded.shape == f.shape
        assert torch.equal(decoded, codec(f, q=q)["f_hat"])
        alone = codec.decode(payloads[2:3])        # one image alone: the same as in its batch
        assert torch.equal(alone, codec(f[2:3], q=q)["f_hat"])


def test_more_stages_more_bits_less_error_and_priors_save_bits(codec):
    f = tokens(8, (4, 4), seed=3)
    sizes = [sum(len(p) for p in codec.encode(f, q=q)) for q in range(CONFIG.codebooks)]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]
    errors = [((codec.decode(codec.encode(f, q=q)) - f) ** 2).mean().item() for q in range(CONFIG.codebooks)]
    assert errors[-1] < errors[0]
    budget = (sizes[1] + sizes[2]) // 16
    assert all(len(p) <= budget for p in codec.encode(f, target_bytes=budget))


def test_the_priors_set_what_an_index_costs(codec):
    """Priors fitted to how often each code vector is chosen make the payload smaller, by what
    their entropy says (uniform priors cost log2(codebook_size) bits an index)."""
    import copy

    f = tokens(16, (4, 4), seed=11)
    uniform, skewed = copy.deepcopy(codec), copy.deepcopy(codec)
    with torch.no_grad():
        for c in (uniform, skewed):      # no context counts: every context codes at its stage's prior
            c.context_counts.zero_()
        uniform.prior.fill_(1.0)
        counts = torch.stack([torch.bincount(row.reshape(-1), minlength=CONFIG.codebook_size)
                              for row in codec(f, q=3)["indices"].transpose(0, 1)]).double()
        skewed.prior.copy_(counts + 0.5)
    uniform.update(), skewed.update()
    n = 16 * 16 * CONFIG.codebooks
    bits = {name: 8 * sum(len(p) - 6 for p in c.encode(f, q=3)) for name, c in (("uniform", uniform), ("skewed", skewed))}
    assert abs(bits["uniform"] - n * codec.index_bits()) < 16 * 12
    indices = skewed(f, q=3)["indices"]               # the skewed priors also steer the assignment
    information = float(sum(skewed.log2_prior()[m][indices[:, m]].sum() for m in range(CONFIG.codebooks)))
    assert bits["skewed"] < 0.9 * bits["uniform"] and abs(bits["skewed"] - information) < 0.02 * information + 16 * 12
    assert torch.equal(skewed.decode(skewed.encode(f, q=3)), skewed(f, q=3)["f_hat"])


def test_entropy_constrained_assignment_trades_error_for_bits(codec):
    """A larger β picks cheaper indices: at one stage, fewer bits and more latent error than nearest
    neighbour (β = 0) under the same priors and code vectors (each token minimises error + β bits)."""
    import copy
    import dataclasses

    f = tokens(16, (4, 4), seed=5)
    bits, errors = [], []
    with torch.no_grad():
        y = codec._tokens(f)
        for beta in (0.0, 0.2, 1.0):
            other = copy.deepcopy(codec)
            other.config = dataclasses.replace(CONFIG, assignment_rate_low=beta, assignment_rate_high=beta)
            bits.append(float(other.estimate_bits(f, q=0).sum()))
            first = other.quantise(y, torch.zeros(16))[0][:, 0]
            errors.append(float((y - other.codebook[0][first]).pow(2).sum()))
            assert torch.equal(other.decode(other.encode(f, q=2)), other(f, q=2)["f_hat"])
    assert bits[0] > bits[1] > bits[2] and errors[0] < errors[1] < errors[2]
    assert bits[2] < 0.95 * bits[0], bits
    # trained with it, the priors follow the tokens' few clusters: an index costs well under log2(K)
    per_index = codec.estimate_bits(f, q=3).mean() / (16 * CONFIG.codebooks)
    assert per_index < 0.7 * codec.index_bits()


def test_contexts_code_repeated_neighbours_and_refinements_in_fewer_bits():
    """Trained on tokens in runs, the counted contexts (left neighbour for stage 0, the previous
    stage's index after) code the same indices in far fewer bits than the stages' priors alone;
    the payloads decode exactly, at what the estimate says; ``contexts: false`` codes with the
    priors alone."""
    import copy
    import dataclasses

    codec = fitted(steps=80, data=runs).eval()
    f = runs(16, (4, 8), seed=3)
    priors_only = copy.deepcopy(codec)
    with torch.no_grad():
        priors_only.context_counts.zero_()
    priors_only.update()
    for q in (0, 2):
        payloads = codec.encode(f, q=q)
        with_contexts = sum(8 * len(p) for p in payloads)
        alone = sum(8 * len(p) for p in priors_only.encode(f, q=q))
        assert with_contexts < 0.8 * alone, (q, with_contexts, alone)
        assert torch.equal(codec.decode(payloads), codec(f, q=q)["f_hat"])
        estimate = codec.estimate_bits(f, q=q)
        excess = with_contexts - estimate.sum() - 48 * 16
        assert -0.02 * estimate.sum() <= excess <= 0.02 * estimate.sum() + 16 * 12
    plain = fitted(steps=10, data=runs, config=dataclasses.replace(CONFIG, contexts=False)).eval()
    assert "context_counts" not in plain.state_dict() and plain.context_rows == 1
    assert torch.equal(plain.decode(plain.encode(f, q=1)), plain(f, q=1)["f_hat"])
    with pytest.raises(ConfigError, match="at most 1024"):
        RVQCodecConfig(codebook_size=2048)
    RVQCodecConfig(codebook_size=2048, contexts=False)


def test_real_bits_match_the_likelihood_estimate(codec):
    """Within 2 % plus the fixed part: the 6-byte header and check, and the coder's termination."""
    f = tokens(16, (4, 8), seed=7)
    for q in (1, 3):
        real = torch.tensor([8.0 * len(p) for p in codec.encode(f, q=q)])
        estimate = codec.estimate_bits(f, q=q)
        excess = (real - estimate - 48).sum()
        assert -0.02 * estimate.sum() <= excess <= 0.02 * estimate.sum() + 16 * 12, (q, real, estimate)


def test_damaged_truncated_and_foreign_payloads_raise_quickly(codec):
    payload = codec.encode(tokens(1, (2, 6)), q=2)[0]
    rng = random.Random(0)
    cases = [b"", b"\x00", payload[:3], payload[:-1], payload + b"\x00", bytes(len(payload))]
    for _ in range(300):
        mutated = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        if bytes(mutated) != payload:
            cases.append(bytes(mutated))
    cases += [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 2 * len(payload)))) for _ in range(100)]
    start = time.perf_counter()
    for case in cases:
        with pytest.raises(BitstreamError):
            codec.decode([case])
    assert time.perf_counter() - start < 10
    with pytest.raises(BitstreamError, match="another codec"):
        fitted(steps=2, seed=1).decode([payload])
    with pytest.raises(BitstreamError, match="expects"):
        codec.decode([payload], expected=(CONFIG.in_channels, 1, 12))
    with pytest.raises(BitstreamError, match="different grids"):
        codec.decode([payload, codec.encode(tokens(1, (1, 5)), q=2)[0]])


@pytest.mark.parametrize("coder", ["arithmetic", "range", "rans"])
def test_every_entropy_coder_codes_the_same_indices_and_carries_a_side_message(codec, coder):
    import copy

    other = copy.deepcopy(codec)
    other.coder = entropy_coder(coder)
    f = tokens(3, (2, 5), seed=9)
    messages = [[1, 2, 3], [4], [5, 6]]
    writers = [lambda enc, m=m: enc.encode(m, [0] * len(m), other.tables()) for m in messages]
    payloads = other.encode(f, q=2, side=writers)
    read = []
    decoded = other.decode(payloads, side=lambda dec: read.append(dec.decode([0] * len(messages[len(read)]),
                                                                              other.tables())))
    assert read == messages and torch.equal(decoded, codec.decode(codec.encode(f, q=2)))


def test_stream_mode_drops_the_header_and_decodes_the_same(codec):
    f = tokens(4, (4, 4), seed=2)
    stream = codec.stream_for((4, 4), q=2)
    bare = codec.encode(f, q=2, stream=stream)
    full = codec.encode(f, q=2)
    assert all(len(b) < len(p) for b, p in zip(bare, full))
    assert torch.equal(codec.decode(bare, stream=stream), codec.decode(full))


def test_training_initialises_code_vectors_from_data_and_learns(codec):
    torch.manual_seed(0)
    fresh = RVQTokenCodec(CONFIG)
    before = fresh.codebook.detach().clone()
    f = tokens(8, seed=50)
    fresh.train()
    first = fresh.train_pass(f, q=3)
    assert bool(fresh.initialised) and not torch.equal(before, fresh.codebook.detach())
    with torch.no_grad():
        start = ((fresh.eval()(f, q=3)["f_hat"] - f) ** 2).mean()
        end = ((codec(f, q=3)["f_hat"] - f) ** 2).mean()     # 120 steps
    assert end < 0.5 * start
    assert first["f_hat"].requires_grad and first["aux_loss"] > 0


def test_registry_builds_it_and_bad_configs_are_clear_errors(codec):
    built = build_codec({"name": "rvq", "in_channels": 16, "codebooks": 2, "codebook_size": 8})
    assert isinstance(built, RVQTokenCodec) and built.max_q == 1
    with pytest.raises(ConfigError, match="codebooks must be at most 16"):
        RVQCodecConfig(codebooks=17)
    with pytest.raises(ConfigError, match="codebook_size"):
        RVQCodecConfig(codebook_size=1)
    with pytest.raises(ShapeError):
        codec.encode(torch.zeros(2, 5, 1, 3), q=1)
    with pytest.raises(ConfigError, match="rate point q"):
        codec.encode(tokens(1), q=4)
    untrained = RVQTokenCodec(CONFIG).eval()     # uniform priors: log2(codebook_size) bits an index
    assert len(untrained.encode(tokens(1), q=0)[0]) == 6 + (12 * 5 + 7) // 8


def test_saved_codec_decodes_payloads_of_the_original(codec, tmp_path):
    from intelliflow.codec.persistence import load_codec, save_codec

    f = tokens(3, (2, 4))
    payloads = codec.encode(f, q=2)
    save_codec(codec, tmp_path / "codec", trained_for="tests")
    loaded = load_codec(tmp_path / "codec")
    assert isinstance(loaded, RVQTokenCodec)
    assert torch.equal(loaded.decode(payloads), codec.decode(payloads))
    assert loaded.encode(f, q=2) == payloads


MIXING = RVQCodecConfig(in_channels=24, hidden_channels=48, latent_channels=8, codebooks=4, codebook_size=32,
                        mixing_layers=1)


@pytest.fixture(scope="module")
def mixing():
    return fitted(steps=40, config=MIXING)


def test_an_untrained_mixer_is_the_identity():
    """A codec with token mixing starts as the per-token codec with the same weights: the same
    indices and the same features."""
    torch.manual_seed(0)
    plain = RVQTokenCodec(CONFIG)
    mixed = RVQTokenCodec(MIXING)
    missing = mixed.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(("mix_a.", "mix_s.")) for k in missing)
    f = tokens(4, (3, 4))
    for codec in (plain, mixed):
        torch.manual_seed(1)     # the same first batch and draws initialise both
        codec.train().train_pass(tokens(8, (3, 4), seed=1), q=3)
        codec.eval().update()
    a, b = plain(f, q=2), mixed(f, q=2)
    assert torch.equal(a["indices"], b["indices"]) and torch.equal(a["f_hat"], b["f_hat"])


@pytest.mark.parametrize("grid", [(1, 12), (1, 1), (3, 7)])
def test_mixed_tokens_decode_bit_exactly_on_any_grid(mixing, grid):
    f = tokens(5, grid)
    for q in (0, 2):
        payloads = mixing.encode(f, q=q)
        assert torch.equal(mixing.decode(payloads, expected=(MIXING.in_channels, *grid)), mixing(f, q=q)["f_hat"])


def test_the_mixing_decoder_fills_a_token_in_from_its_neighbours(mixing, codec):
    """One token's index changes: without mixing only that token's features change; with it, the
    others' do too (the decoder reads every token's indices); the encoder's mixer changes the
    features it quantises."""
    def decoded(c, first):
        indices = torch.zeros(1, c.config.codebooks, 6, dtype=torch.long)
        indices[0, 0, 0] = first
        return c._features(c.dequantise(indices, [1]), (1, 6))[0]

    for c, spreads in ((codec, False), (mixing, True)):
        changed = (decoded(c, 3) - decoded(c, 5)).abs().amax(0)          # [1, 6] per token
        assert changed[0, 0] > 0 and bool((changed[0, 1:] > 1e-6).any()) == spreads
    x = tokens(1, (2, 3))
    assert not torch.equal(mixing._mix(mixing.mix_a, x), x) and codec.mix_a is None
    with pytest.raises(ConfigError, match="mixing_heads"):
        RVQCodecConfig(in_channels=24, mixing_layers=1, mixing_heads=5)
    with pytest.raises(ConfigError, match="mixing_layers"):
        RVQCodecConfig(mixing_layers=-1)


# --------------------------------------------------------------------------------- merged tokens (TOFC)

from intelliflow.codec.token_codecs import MergeCodecConfig, MergedTokenCodec, density_peak_clusters  # noqa: E402

MERGE = MergeCodecConfig(in_channels=24, hidden_channels=32, latent_channels=8, hyper_channels=8, rate_points=4,
                         keep_ratio=0.25)


def blocks(batch=4, seed=0, grid=(6, 6), labels=False):
    """Features made of a few flat regions (as image tokens are), with a little noise (and each
    token's region [B, N] with ``labels``)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, MERGE.in_channels, generator=torch.Generator().manual_seed(0)) * 2
    h, w = grid
    rows, regions = [], []
    for _ in range(batch):
        cut_r, cut_c = (int(torch.randint(1, side, (1,), generator=g)) if side > 1 else 1 for side in (h, w))
        label = torch.zeros(h, w, dtype=torch.long)
        label[:cut_r, cut_c:], label[cut_r:, :cut_c], label[cut_r:, cut_c:] = 1, 2, 3
        rows.append(centres[label.reshape(-1)].T.reshape(-1, h, w))
        regions.append(label.reshape(-1))
    x = torch.stack(rows)
    x = x + 0.05 * torch.randn(x.shape, generator=g)
    return (x, torch.stack(regions)) if labels else x


@pytest.fixture(scope="module")
def merging():
    torch.manual_seed(0)
    codec = MergedTokenCodec(MERGE)
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    for step in range(80):
        f = blocks(4, seed=step + 100)
        out = codec.train_pass(f, q=torch.rand(4) * codec.max_q)
        loss = ((out["f_hat"] - f) ** 2).mean() + 1e-3 * out["bits"].mean() + out["aux_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    codec.eval().update()
    return codec


def test_density_peaks_find_the_regions_and_number_clusters_in_reading_order():
    label = torch.zeros(6, 6, dtype=torch.long)       # four quadrants of 9 tokens each (more than knn)
    label[:3, 3:], label[3:, :3], label[3:, 3:] = 1, 2, 3
    label = label.reshape(-1)
    centres = torch.randn(4, 24, generator=torch.Generator().manual_seed(1)) * 2
    f = (centres[label] + 0.05 * torch.randn(36, 24, generator=torch.Generator().manual_seed(2))).T.reshape(24, 6, 6)
    assign = density_peak_clusters(f.flatten(1).T, 4)
    # tokens of one region share a cluster, tokens of different regions do not
    assert torch.equal(assign[:, None] == assign[None, :], label[:, None] == label[None, :])
    first_seen = [int((assign == k).nonzero()[0]) for k in range(4)]
    assert first_seen == sorted(first_seen) and assign[0] == 0
    assert torch.equal(density_peak_clusters(f.flatten(1).T, 4), assign)     # a function of the tokens


@pytest.mark.parametrize("grid", [(6, 6), (1, 10), (3, 5)])
def test_merged_tokens_decode_bit_exactly_with_their_cluster_map(merging, grid):
    f = blocks(3, seed=2, grid=grid)
    for q in (0, 1.5, 3):
        payloads = merging.encode(f, q=q)
        for i in range(3):
            assert torch.equal(merging.decode(payloads[i:i + 1]), merging(f[i:i + 1], q=q)["f_hat"])
        decoded = merging.decode(payloads, expected=(MERGE.in_channels, *grid))
        # every token carries its cluster's merged token: as many distinct tokens as clusters
        k = merging.merged_count(grid[0] * grid[1])
        assert all(len(torch.unique(image.flatten(1).T, dim=0)) <= k for image in decoded)


def test_merged_tokens_rate_rises_with_q_and_real_bits_follow_the_estimate(merging):
    f = blocks(8, seed=4)
    sizes = [sum(len(p) for p in merging.encode(f, q=q)) for q in (0, 1, 2, 3)]
    assert sizes == sorted(sizes)
    errors = [((merging.decode(merging.encode(f, q=q)) - f) ** 2).mean().item() for q in (0, 3)]
    assert errors[1] < errors[0]
    real = torch.tensor([8.0 * len(p) for p in merging.encode(f, q=3)])
    estimate = merging.estimate_bits(f, q=3)
    excess = (real - estimate - 48).sum()
    assert -0.05 * estimate.sum() <= excess <= 0.05 * estimate.sum() + 8 * 12, (real, estimate)
    # the map of flat regions is mostly "as my neighbour": far below naming every token's cluster
    kinds, named = MergedTokenCodec.map_symbols(merging(f[:1], q=0)["assign"][0], (6, 6))
    assert len(named) < len(kinds) // 2


def test_damaged_merged_token_payloads_raise(merging):
    payload = merging.encode(blocks(1, seed=8), q=2)[0]
    rng = random.Random(1)
    cases = [b"", payload[:4], payload[:-1], payload + b"\x00"]
    for _ in range(200):
        mutated = bytearray(payload)
        mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        cases.append(bytes(mutated))
    for case in cases:
        with pytest.raises(BitstreamError):
            merging.decode([case])
    with pytest.raises(ConfigError, match="keep_ratio"):
        MergeCodecConfig(keep_ratio=0)
    with pytest.raises(ConfigError, match="downsample must be 0"):
        MergeCodecConfig(downsample=1)


def _forged(codec, q16, grid, write):
    """A payload a sender with the codec's weights can make: any symbols, a valid header and check."""
    from intelliflow.codec import bitstream

    encoder = codec.coder.encoder()
    write(encoder)
    return bitstream.pack(codec.payload_id, q16, grid[0], grid[1], encoder.finish(), codec.fingerprint)


def test_forged_and_damaged_bodies_reach_the_entropy_decoder_and_are_refused(codec, merging):
    """Indices outside the codebook and cluster numbers outside the map (the coders' escape codes
    any integer) are BitstreamErrors; damaged bare stream bodies (no check of their own: the link
    checks) decode to something or are refused, never another exception."""
    for bad in (-1, -100, CONFIG.codebook_size, 10 ** 6):
        # as the decoder reads stage 0: one index at a time, under its left neighbour's row
        k = CONFIG.codebook_size
        payload = _forged(codec, 0, (1, 3), lambda enc: [enc.encode([v], [row], codec.tables())
                                                         for v, row in ((0, k), (bad, 0), (1, 0))])
        with pytest.raises(BitstreamError, match="outside the codebook"):
            codec.decode([payload])
    grid, clusters = (2, 4), merging.merged_count(8)
    for bad in (-1, clusters, 999):
        from intelliflow.codec import bitstream
        with torch.no_grad():
            y = merging.g_a(torch.zeros(1, MERGE.in_channels, 1, clusters))
            body = merging._entropy_compress(y, [lambda e, bad=bad: (
                e.encode([2] * 8, [0] * 8, merging._map_table(clusters)),
                e.encode([0, bad, 1, 0, 0, 0, 0, 0], [1] * 8, merging._map_table(clusters)))])[0]
        payload = bitstream.pack(merging.payload_id, 0, grid[0], grid[1], body, merging.fingerprint)
        with pytest.raises(BitstreamError, match="cluster map"):
            merging.decode([payload])
    rng = random.Random(3)
    for c, f, q in ((codec, tokens(2, (2, 6)), 2), (merging, blocks(2, seed=6), 2)):
        stream = c.stream_for(tuple(f.shape[-2:]), q=q)
        bare = c.encode(f, q=q, stream=stream)
        for _ in range(150):
            mutated = bytearray(bare[0])
            if mutated:
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
            if rng.random() < 0.3:
                mutated = mutated[: rng.randrange(len(mutated) + 1)]
            try:
                out = c.decode([bytes(mutated)], stream=stream)
                assert out.shape == f[:1].shape
            except BitstreamError:
                pass


def test_rvq_with_a_mean_grid_codes_differences_from_the_training_mean():
    """What every image shares at a position (a positional embedding) costs no bits: the codec
    codes each image's difference from the stored mean and adds the mean back."""
    import dataclasses

    config = dataclasses.replace(CONFIG, mean_grid=[3, 4])
    assert config.mean_grid == (3, 4)
    shared = 5 * torch.randn(1, CONFIG.in_channels, 3, 4, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    codec = RVQTokenCodec(config)
    codec.set_feature_mean(tokens(32, (3, 4), seed=1) + shared)
    codec.train().train_pass(tokens(8, (3, 4), seed=2) + shared, q=3)
    codec.eval()
    f = tokens(4, (3, 4), seed=3) + shared
    payloads = codec.encode(f, q=2)
    assert torch.equal(codec.decode(payloads), codec(f, q=2)["f_hat"])
    plain = RVQTokenCodec(CONFIG)
    torch.manual_seed(0)
    plain.train().train_pass(tokens(8, (3, 4), seed=2) + shared, q=3)
    plain.eval()
    error = lambda c: float((c(f, q=3)["f_hat"] - f).pow(2).mean())   # noqa: E731
    assert error(codec) < 0.5 * error(plain)
    with pytest.raises(ShapeError, match="3x4 grid"):
        codec.encode(tokens(1, (1, 12)), q=0)
    with pytest.raises(BitstreamError, match="codes only 3x4"):
        codec.decode([_regrid(codec, payloads[0])])
    with pytest.raises(ConfigError, match="mean_grid"):
        RVQCodecConfig(mean_grid=[0, 4])


def _regrid(codec, payload):
    """The payload re-framed to declare a 1x12 grid (a valid frame: only the grid check refuses it)."""
    from intelliflow.codec import bitstream

    packet = bitstream.unpack(payload, codec.payload_id, codec.fingerprint, None)
    return bitstream.pack(codec.payload_id, packet.q16, 1, 12, packet.body, codec.fingerprint, None)
