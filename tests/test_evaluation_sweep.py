"""intelliflow eval over channels with the shipped codecs, the codecs listing, and the quick demo."""

import csv
import json

import pytest

from intelliflow.errors import ConfigError
from intelliflow.recipes.cli import main
from intelliflow.channels import channel_config
from intelliflow.evaluation.sweep import evaluate


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_codecs_lists_the_shipped_checkpoints(capsys):
    assert main(["codecs", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    names = {s["name"]: s for s in info["shipped_checkpoints"]}
    assert {"shapes-hyperprior", "shapes-jscc-awgn"} <= set(names)
    assert names["shapes-hyperprior"]["objective"] == "caption" and names["shapes-hyperprior"]["split"] == 4
    assert {"factorized", "hyperprior", "jscc", "jpeg", "webp", "quantize", "mse-codec", "text",
            "identity"} <= set(info["registered"])


def test_digital_codec_over_awgn_rate_points_and_the_budget_cliff(tmp_path):
    rows = evaluate(codec="shapes-hyperprior", channel="awgn", snr=[-4.0, 20.0], out=tmp_path,
                    limit=6, meteor=False, rate_points=[1.0, 5.0], progress=False, mcs=9)
    assert [(r["snr_db"], r["rate_point"]) for r in rows] == [(-4.0, 1.0), (-4.0, 5.0), (20.0, 1.0), (20.0, 5.0)]
    high = {r["rate_point"]: r for r in rows if r["snr_db"] == 20.0}
    assert high[5.0]["payload_bits"] > high[1.0]["payload_bits"]             # one codec, many rates
    assert all(r["loss_rate"] == 0 for r in high.values()) and high[5.0]["CIDEr-D"] > 1.0  # MCS 9 at 20 dB: safe
    low = {r["rate_point"]: r for r in rows if r["snr_db"] == -4.0}
    assert all(r["loss_rate"] == 1.0 and r["CIDEr-D"] == 0.0 for r in low.values())  # MCS 9 at -4 dB: lost
    again = evaluate(codec="shapes-hyperprior", channel="awgn", snr=[6.0], out=tmp_path / "c",
                     limit=6, meteor=False, rate_points=[5.0], progress=False, seed=3)
    assert evaluate(codec="shapes-hyperprior", channel="awgn", snr=[6.0], out=tmp_path / "d",
                    limit=6, meteor=False, rate_points=[5.0], progress=False, seed=3) == again  # seeded: repeatable
    budget = evaluate(codec="shapes-hyperprior", channel="awgn", snr=[-6.0, 20.0],
                      out=tmp_path / "b", limit=6, meteor=False, channel_uses=256, progress=False)
    assert budget[0]["loss_rate"] == 1.0 and budget[0]["CIDEr-D"] == 0.0       # the cliff: nothing fits
    assert budget[1]["loss_rate"] < 0.5 and budget[1]["payload_bits"] > high[1.0]["payload_bits"]
    assert len(read(tmp_path / "b" / "results.csv")) == 2


def test_jscc_over_awgn_degrades_gracefully_and_reports_channel_uses(tmp_path):
    code = main(["eval", "--codec", "shapes-jscc-awgn", "--channel", "awgn", "--snr", "0,20", "--symbols", "4,16",
                 "--limit", "6", "--no-meteor", "--out", str(tmp_path)])
    assert code == 0
    rows = read(tmp_path / "results.csv")
    uses = {(float(r["snr_db"]), int(r["symbols"])): float(r["channel_uses"]) for r in rows}
    assert uses == {(0.0, 4): 64.0, (0.0, 16): 256.0, (20.0, 4): 64.0, (20.0, 16): 256.0}
    assert all(r["payload_bits"] == "" and r["kind"] == "analog" for r in rows)
    assert min(float(r["CIDEr-D"]) for r in rows if r["symbols"] == "16") > 0.5


def test_eval_refuses_what_cannot_be_sent(tmp_path):
    with pytest.raises(ConfigError, match="analog"):
        evaluate(codec="shapes-jscc-awgn", out=tmp_path, limit=2)
    with pytest.raises(ConfigError, match="needs --snr"):
        evaluate(codec="jpeg-50", channel="awgn", out=tmp_path, limit=2)
    assert channel_config("rayleigh:csi=estimated,block_length=32") == {"name": "rayleigh", "csi": "estimated",
                                                                         "block_length": 32}
    with pytest.raises(ConfigError, match="key=value"):
        channel_config("rayleigh:csi")


def test_quick_demo_through_the_cli(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Bits per image to reach 95 %" in out and "ours (hyperprior)" in out
    rows = read(tmp_path / "results.csv")
    methods = {r["method"] for r in rows}
    assert {"identity", "ours (hyperprior)", "jpeg", "webp", "quantize", "text"} <= methods
    assert {r["channel"] for r in rows} >= {"none", "awgn", "rayleigh"}
    assert (tmp_path / "curves.png").stat().st_size > 30_000 and (tmp_path / "summary.md").is_file()


def test_a_sweep_over_several_batches_captions_every_image(tmp_path):
    (row,) = evaluate(codec="quantize-8", limit=5, batch_size=2, meteor=False, progress=False, out=tmp_path)
    captions = json.loads((tmp_path / "captions.json").read_text())
    assert row["n_images"] == 5 and len(captions) == 5 and len({c["image_id"] for c in captions}) == 5
    assert all(c["caption"] for c in captions) and row["payload_bits"] > 0
