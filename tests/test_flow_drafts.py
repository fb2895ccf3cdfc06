"""Speculative captioning through the one inference path: the device drafts, the draft rides in
front of the payload, the receiver verifies it; captions are plain greedy's wherever it runs
(Flow, .iflow files, the edge service, eval)."""

import json

import pytest
import torch

from intelliflow.codec import resolve_codec
from intelliflow.data.shapes import make_sample
from intelliflow.deploy.container import unpack_iflow
from intelliflow.deploy.files import FileDecoder, FileEncoder
from intelliflow.errors import ConfigError, PayloadMismatchError
from intelliflow.flow import Flow
from intelliflow.flow.endpoints import Device, Receiver
from intelliflow.models import load_split_model
from intelliflow.models.drafter import Drafter, load_drafter
from intelliflow.recipes.cli import main
from test_models_split import BUILDERS

IMAGES = [make_sample("test", i).image for i in range(8)]


@pytest.fixture(scope="module")
def shipped():
    return load_split_model("shapes-captioner"), load_drafter("shapes-drafter")


def test_the_shipped_drafter_drafts_what_the_receiver_keeps_and_captions_do_not_change(shipped):
    model, drafter = shipped
    plain, drafted = Flow(model, "shapes-hyperprior"), Flow(model, "shapes-hyperprior", drafter=drafter)
    for q in (1.0, 5.0):
        a, b = plain.caption(IMAGES, q=q), drafted.caption(IMAGES, q=q)
        assert a.captions == b.captions
        d = b.draft
        for plain_bits, draft_bits, both in zip(a.payload_bits, d.bits, b.payload_bits):   # inside the codec's message
            assert both - 8 <= plain_bits + draft_bits <= both + 8
        assert all(4 <= bits <= 40 for bits in d.bits)
        assert sum(d.accepted) >= 0.85 * sum(d.drafted)
        assert all(p < g for p, g in zip(d.passes, d.greedy_passes) if p is not None)
        assert sum(c == f for c, f in zip(d.captions, b.captions)) >= 6                 # early answers mostly right
        assert all(0 < c <= 1 for c in d.confidence)


def test_drafts_ride_in_front_of_prefix_tokens_and_a_byte_budget_counts_them():
    model = BUILDERS["blip"](1)                       # a CLS token travels beside the grid
    torch.manual_seed(0)
    drafter = Drafter.for_model(model, width=32, layers=1).eval()   # untrained: wrong drafts
    drafter.count_ngrams([[5, 6, 2]])
    codec = resolve_codec("quantize-8")
    sent = Device(model, codec, drafter).encode(IMAGES[:3])
    plain = Receiver(model, codec).captions(Device(model, codec).encode(IMAGES[:3]).data)
    receiver = Receiver(model, codec, drafter)
    decoded = receiver.decode(sent.data)
    assert decoded.drafts == sent.draft.tokens
    captions, verified = receiver.finish_verified(decoded)
    assert captions == plain and len(verified.accepted) == 3
    learned = resolve_codec("shapes-hyperprior")
    shapes, shapes_drafter = load_split_model("shapes-captioner"), load_drafter("shapes-drafter")
    budget = Device(shapes, learned, shapes_drafter).encode(IMAGES[:3], target_bytes=16)
    assert all(len(p) <= 16 for p in budget.data) and all(b > 0 for b in budget.draft_bits)


def test_a_drafter_needs_a_byte_codec_of_features_and_its_own_split(shipped):
    model, drafter = shipped
    with pytest.raises(ConfigError, match="byte codec"):
        Flow(model, "jpeg-50", drafter=drafter)
    with pytest.raises(ConfigError, match="split"):
        Flow(load_split_model("shapes-captioner", split=2), "quantize-8", drafter=drafter)


def test_iflow_files_name_the_drafter_and_decode_to_the_same_captions(shipped, tmp_path):
    files = FileEncoder("shapes-captioner", "shapes-hyperprior", drafter="shapes-drafter", q=2.0).encode(IMAGES[:4])
    plain = FileEncoder("shapes-captioner", "shapes-hyperprior", q=2.0).encode(IMAGES[:4])
    assert all(unpack_iflow(f).drafter == "shapes-drafter" for f in files)
    assert all(unpack_iflow(f).drafter is None for f in plain)
    decoder = FileDecoder()
    assert [decoder.decode(f)[0] for f in files] == [decoder.decode(f)[0] for f in plain]
    folder = tmp_path / "my-drafter"
    shipped[1].save(folder)
    foreign = FileEncoder("shapes-captioner", "shapes-hyperprior", drafter=str(folder), q=2.0).encode(IMAGES[:1])[0]
    with pytest.raises(PayloadMismatchError, match="my-drafter"):
        decoder.decode(foreign)
    assert FileDecoder(drafter=str(folder)).decode(foreign)[0] == decoder.decode(plain[0])[0]


def test_the_edge_service_verifies_drafts_beside_plain_requests(shipped):
    from intelliflow.deploy.client import SplitDevice
    from intelliflow.deploy.service import EdgeService, start_server

    service = EdgeService("shapes-captioner", "shapes-hyperprior", drafter="shapes-drafter", max_batch=8,
                          batch_wait_ms=50)
    server, _ = start_server(service, load_in_background=False)
    try:
        for stream in (False, None):
            plain = SplitDevice("shapes-captioner", "shapes-hyperprior", server.url, stream=stream)
            drafted = SplitDevice("shapes-captioner", "shapes-hyperprior", server.url, stream=stream,
                                  drafter="shapes-drafter")
            for image in IMAGES[:3]:
                a, b = plain.caption_one(image), drafted.caption_one(image)
                assert a["caption"] == b["caption"] and "draft" not in a
                d = b["draft"]
                assert d["accepted"] <= d["drafted"] and d["passes"] <= d["greedy_passes"] and d["bits"] > 0
                assert abs(b["bits"] - a["bits"] - d["bits"]) <= 8 and b["draft_ms"] > 0
    finally:
        server.shutdown()
        server.server_close()
        service.close()


def test_eval_and_caption_with_a_draft(tmp_path, capsys):
    assert main(["eval", "--codec", "shapes-hyperprior", "--rate-points", "1", "--limit", "20", "--no-meteor",
                 "--draft", "shapes-drafter", "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "draft_acceptance" in out
    from intelliflow.evaluation.results import load_results

    (row,) = load_results([tmp_path / "e"])
    assert row["drafter"] == "shapes-drafter" and 0.85 <= row["draft_acceptance"] <= 1
    assert row["receiver_passes"] < row["greedy_passes"] and 4 <= row["draft_bits"] <= 40
    assert 0 <= row["early_share"] <= 1 and row["draft_CIDEr-D"] > 1.5
    image = tmp_path / "one.png"
    IMAGES[1].save(image)
    assert main(["caption", str(image), "--draft", "shapes-drafter", "--q", "2", "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer["caption"] == load_split_model("shapes-captioner").caption([IMAGES[1]])[0]
    assert answer["draft"]["accepted"] == answer["draft"]["drafted"]
