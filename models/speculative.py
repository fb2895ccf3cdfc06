"""Lossless verification of a draft caption at the receiver (speculative decoding across tiers).

The device's drafter proposes the caption's tokens; the receiver checks them all at once::

    prefill (image states + start tokens)  ─► logits at the start: the first greedy token
    extend  (the whole draft, one teacher-forced pass with the prefill's cache) ─► logits at every draft position
    accepted = the longest prefix of the draft that greedy decoding gives (draft[t] == argmax at t)
    bonus    = the verifier's own token at the first mismatch (free: that pass computed it)
    crop the cache back to the verified prefix (``Cache.crop``) and decode greedily from there

The caption is token for token what plain greedy decoding (``generate``) gives on the same
features: every token is the verifier's own argmax given the same prefix, and only the number of
decoder passes changes (2 + the tokens after the bonus, against one pass per token).

Why not ``generate(assistant_model=...)``: transformers' assisted generation runs both models in
one process, at batch size 1, and its drafts come from a local assistant; here the draft was made
on another machine and arrived with the payload. The pieces used are transformers' own: each
model's forward with its cache and ``Cache.crop``/``Cache.batch_select_indices``. The continuation
is a plain greedy loop over that forward (what ``generate`` does per step) because ``generate``
cannot resume from a cache that holds image tokens beside the text (GIT).

A model plugs in by giving a :class:`Decoding` (see the adapters in :mod:`.hf_adapters`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from intelliflow.errors import ConfigError

#: generation settings that change which token greedy decoding picks: verification refuses them
_ARGMAX_CHANGERS = {"num_beams": 1, "do_sample": False, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                    "encoder_repetition_penalty": 1.0, "min_length": 0, "min_new_tokens": 0,
                    "bad_words_ids": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
                    "suppress_tokens": None, "begin_suppress_tokens": None, "sequence_bias": None,
                    "penalty_alpha": None, "diversity_penalty": 0.0, "renormalize_logits": False}


@dataclass
class Decoding:
    """How one model's text decoder runs step by step on given image states.

    :ivar start: the ids generation starts from [S] (the decoder start or BOS token);
    :ivar eos, pad: end and padding ids of the generated sequence;
    :ivar max_new_tokens: the longest caption greedy decoding makes (its ``max_new_tokens``);
    :ivar prefill: ``(states [B, N, D], ids [B, S]) -> (logits [B, S, V], cache)``: the first pass;
    :ivar extend: ``(states [B, N, D], ids [B, T], cache) -> (logits [B, T, V], cache)``: more
        tokens on a cache (positions follow the cache, as in ``generate``'s later steps).
    """

    start: list[int]
    eos: int
    pad: int
    max_new_tokens: int
    prefill: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Any]]
    extend: Callable[[torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, Any]]


@dataclass
class Verified:
    """A verified batch.

    :ivar ids: generated ids [B, S + T] laid out as ``generate`` returns them (start tokens, the
        caption, ``pad`` after the end);
    :ivar accepted: draft tokens kept, per caption;
    :ivar drafted: draft tokens received, per caption (after the length limit);
    :ivar passes: decoder passes each caption needs on its own (the prefill, the verify pass where
        it has a draft, then one per token after the bonus token);
    :ivar new_tokens: tokens in each caption (its end token included): plain greedy's passes.
    """

    ids: torch.Tensor
    accepted: list[int]
    drafted: list[int]
    passes: list[int]
    new_tokens: list[int]


def greedy_limit(model, start_length: int, generation: dict) -> int:
    """The ``max_new_tokens`` with which ``model.generate`` decodes greedily, from the call's options
    and the model's generation config (transformers' own rule: ``max_new_tokens``, else
    ``max_length`` less the start, else its default length, at most the model's positions); a
    :class:`ConfigError` for options under which it is not plain greedy decoding."""
    allowed = {"max_new_tokens", "max_length"}
    other = sorted(k for k, v in generation.items()
                   if k not in allowed and not (k in _ARGMAX_CHANGERS and v == _ARGMAX_CHANGERS[k]))
    if other:
        raise ConfigError(f"draft verification reproduces plain greedy decoding; it takes max_new_tokens or "
                          f"max_length, not {', '.join(other)}")
    config = model.generation_config
    for name, neutral in _ARGMAX_CHANGERS.items():
        value = getattr(config, name, neutral)
        if value not in (neutral, None) and not (name in ("min_length", "min_new_tokens") and not value):
            raise ConfigError(f"the model's generation config sets {name}={value!r}: greedy decoding under it is "
                              "not what a draft is verified against; clear it to verify drafts")
    if generation.get("max_new_tokens") is not None:
        return int(generation["max_new_tokens"])
    if generation.get("max_length") is not None:
        return int(generation["max_length"]) - start_length
    if config.max_new_tokens is not None:
        return int(config.max_new_tokens)
    if config.max_length is not None:
        return int(config.max_length) - start_length
    length = int(config._get_default_generation_params().get("max_length", 20)) + start_length
    positions = getattr(model.config, "max_position_embeddings", None)
    return (length if positions is None else min(length, int(positions))) - start_length


def _trim(draft: Sequence[int], eos: int, limit: int) -> list[int]:
    """A draft up to its first end token, at most ``limit`` tokens."""
    out = []
    for t in list(draft)[:limit]:
        out.append(int(t))
        if int(t) == eos:
            break
    return out


@torch.no_grad()
def verify_drafts(decoding: Decoding, states: torch.Tensor, drafts: Sequence[Sequence[int]]) -> Verified:
    """Verify one draft per image against greedy decoding of ``states`` [B, N, D] (see the module
    docstring); ``drafts``: token ids per image (the caption's tokens after the start, its end token
    included where the drafter ended)."""
    b, device = states.shape[0], states.device
    if len(drafts) != b:
        raise ConfigError(f"{len(drafts)} drafts for {b} images")
    start, eos, pad, limit = decoding.start, decoding.eos, decoding.pad, decoding.max_new_tokens
    s = len(start)
    drafts = [_trim(d, eos, limit) for d in drafts]
    logits, cache = decoding.prefill(states, torch.tensor([start] * b, dtype=torch.long, device=device))
    vocab = logits.shape[-1]
    bad = next((t for d in drafts for t in d if not 0 <= t < vocab), None)
    if bad is not None:
        raise ConfigError(f"a draft holds token id {bad}, outside the verifier's vocabulary of {vocab}")
    first = logits[:, -1].argmax(-1)                                  # the first greedy token
    offset = cache.get_seq_length() - s                               # cached tokens before the text (image tokens)
    width = max((len(d) for d in drafts), default=0)
    if width:
        chunk = torch.full((b, width), pad, dtype=torch.long, device=device)
        for i, d in enumerate(drafts):
            chunk[i, :len(d)] = torch.tensor(d, dtype=torch.long)
        # right padding needs no mask: the decoder is causal, so a real position never sees a pad after it
        logits, cache = decoding.extend(states, chunk, cache)
        greedy = torch.cat([first[:, None], logits.argmax(-1)], dim=1).tolist()   # greedy[i][t]: token t's argmax
    else:
        greedy = first[:, None].tolist()
    tokens, accepted, passes = [], [], []
    for i, d in enumerate(drafts):
        n = 0
        while n < len(d) and d[n] == greedy[i][n]:
            n += 1
        kept = d[:n]
        if not (kept and kept[-1] == eos) and n < limit:
            kept = kept + [greedy[i][n]]                              # the bonus token
        tokens.append(kept)
        accepted.append(n)
        passes.append(2 if d else 1)                                  # what this caption needs on its own
    open_rows = [i for i, t in enumerate(tokens) if t[-1] != eos and len(t) < limit]
    if open_rows:
        _continue(decoding, states, tokens, accepted, passes, open_rows, cache, offset, s)
    new_tokens = [len(t) for t in tokens]
    ids = torch.full((b, s + max(new_tokens)), pad, dtype=torch.long, device=device)
    ids[:, :s] = torch.tensor(start, dtype=torch.long)
    for i, t in enumerate(tokens):
        ids[i, s:s + len(t)] = torch.tensor(t, dtype=torch.long)
    return Verified(ids, accepted, [len(d) for d in drafts], passes, new_tokens)


def _continue(decoding: Decoding, states, tokens, accepted, passes, rows, cache, offset, s) -> None:
    """Greedy decoding of ``rows`` from their verified prefixes, in one batch and in lockstep.

    The cache is cut back (``Cache.crop``) to the shortest verified prefix among the rows, ``c``
    tokens; every row then advances one position per pass, fed its own known tokens (accepted
    draft, bonus) while it has them and its own argmax after, so all rows share one cache length.
    A row recomputes the positions between ``c`` and its own prefix; its tokens do not change."""
    eos, pad, limit = decoding.eos, decoding.pad, decoding.max_new_tokens
    index = torch.tensor(rows, device=states.device)
    cache.batch_select_indices(index)
    states = states[index]
    known = [list(tokens[i]) for i in rows]           # the caption so far, per open row
    verified = [accepted[i] for i in rows]            # of which the cache holds the first `verified`
    c = min(verified)
    cache.crop(-(cache.get_seq_length() - (offset + s + c)))
    position = c                                      # the caption token fed next
    done = [False] * len(rows)
    while not all(done):
        feed = [k[position] if not stop else pad for k, stop in zip(known, done)]
        logits, cache = decoding.extend(states, torch.tensor(feed, device=states.device)[:, None], cache)
        nxt = logits[:, -1].argmax(-1).tolist()
        position += 1
        for j, k in enumerate(known):
            if done[j]:
                continue
            if position >= verified[j] + 1:           # past this row's verified prefix: a pass it needs
                passes[rows[j]] += 1
            if position == len(k):                    # the pass predicted this row's next token
                k.append(nxt[j])
            if k[-1] == eos or len(k) >= limit:
                done[j] = True
    for j, i in enumerate(rows):
        tokens[i] = known[j]
