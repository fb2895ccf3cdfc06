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
    assert names["shapes-hyperprior-k2"]["split"] == 2          # one checkpoint per split point
    assert {"factorized", "hyperprior", "jscc", "jpeg", "webp", "quantize", "mse-codec", "text",
            "identity"} <= set(info["registered"])


def test_digital_codec_over_awgn_rate_points_and_the_budget_cliff(tmp_path):
    rows = evaluate(codec="shapes-hyperprior", channel="awgn", snr=[-8.0, 20.0], out=tmp_path,
                    limit=6, meteor=False, rate_points=[1.0, 5.0], progress=False, mcs=9)
    assert [(r["snr_db"], r["rate_point"]) for r in rows] == [(-8.0, 1.0), (-8.0, 5.0), (20.0, 1.0), (20.0, 5.0)]
    high = {r["rate_point"]: r for r in rows if r["snr_db"] == 20.0}
    assert high[5.0]["payload_bits"] > high[1.0]["payload_bits"]             # one codec, many rates
    assert all(r["loss_rate"] == 0 for r in high.values()) and high[5.0]["CIDEr-D"] > 1.0  # MCS 9 at 20 dB: safe
    assert all(r["first_tx_loss"] == 0 and r["mean_transmissions"] == 1 for r in high.values())
    low = {r["rate_point"]: r for r in rows if r["snr_db"] == -8.0}
    assert all(r["loss_rate"] == 1.0 and r["CIDEr-D"] == 0.0 for r in low.values())  # MCS 9 at -8 dB: lost...
    assert all(r["first_tx_loss"] == 1 and r["mean_transmissions"] == 4 for r in low.values())  # ...after 4 tries
    again = evaluate(codec="shapes-hyperprior", channel="awgn", snr=[6.0], out=tmp_path / "c",
                     limit=6, meteor=False, rate_points=[5.0], progress=False, seed=3)
    assert evaluate(codec="shapes-hyperprior", channel="awgn", snr=[6.0], out=tmp_path / "d",
                    limit=6, meteor=False, rate_points=[5.0], progress=False, seed=3) == again  # seeded: repeatable
    budget = evaluate(codec="shapes-hyperprior", channel="awgn", snr=[-6.0, 20.0],
                      out=tmp_path / "b", limit=6, meteor=False, channel_uses=96, progress=False)
    assert budget[0]["loss_rate"] == 1.0 and budget[0]["CIDEr-D"] == 0.0       # the cliff: nothing fits (no byte at MCS 3)
    assert budget[1]["loss_rate"] < 0.5 and budget[1]["payload_bits"] > high[1.0]["payload_bits"]
    assert len(read(tmp_path / "b" / "results.csv")) == 2


def test_harq_retransmits_what_failed_and_every_retransmission_is_counted():
    """At an SNR just under MCS 9's threshold, HARQ with incremental redundancy delivers payloads
    that a single transmission loses, each retransmission counted in the channel uses; residual
    loss falls and the first-transmission loss is what one transmission alone would lose."""
    options = {"codec": "shapes-hyperprior", "rate_points": [2.5], "channel": "awgn", "snr": [2.5], "limit": 20,
               "batch_size": 20, "meteor": False, "progress": False, "mcs": 9}
    once, harq = evaluate(**options, harq=1)[0], evaluate(**options)[0]
    assert once["mean_transmissions"] == 1 and once["loss_rate"] == once["first_tx_loss"] > 0.3
    assert harq["first_tx_loss"] > 0.3 and harq["loss_rate"] < 0.1 and 1 < harq["mean_transmissions"] <= 4
    assert harq["channel_uses"] > once["channel_uses"] * 1.3                  # retransmissions cost channel uses
    assert harq["CIDEr-D"] > once["CIDEr-D"]


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
    assert "- 0.95 semantic accuracy:" in out and "- the CIDEr-D target:" in out   # ours against the best upload
    assert "## Analog and digital at equal channel uses" in out and "Digital scores higher at" in out
    rows = read(tmp_path / "results.csv")
    methods = {r["method"] for r in rows}
    assert {"identity", "ours (hyperprior)", "jpeg", "webp", "jp2k", "bmshj2018", "quantize", "text"} <= methods
    # the learned image codec rides the same 5G link as ours, HARQ included
    assert {r["channel"] for r in rows if r["method"] == "bmshj2018"} >= {"none", "awgn", "rayleigh"}
    assert all(r["first_tx_loss"] != "" and r["mean_transmissions"] != "" for r in rows
               if r["method"] == "bmshj2018" and r["channel"] != "none")
    assert {r["channel"] for r in rows} >= {"none", "awgn", "rayleigh"}
    assert (tmp_path / "curves.png").stat().st_size > 30_000 and (tmp_path / "summary.md").is_file()


def test_a_sweep_over_several_batches_captions_every_image(tmp_path):
    (row,) = evaluate(codec="quantize-8", limit=5, batch_size=2, meteor=False, progress=False, out=tmp_path)
    captions = json.loads((tmp_path / "captions.json").read_text())
    assert row["n_images"] == 5 and len(captions) == 5 and len({c["image_id"] for c in captions}) == 5
    assert all(c["caption"] for c in captions) and row["payload_bits"] > 0


def test_evaluation_under_torchrun_equals_one_process_row_for_row(tmp_path):
    """Two processes (torchrun, gloo on CPU) share the batches of every operating point, over a
    noisy channel with a digital and an analog codec; results.csv and captions.json equal a
    one-process run's exactly, because every batch draws its own seeded noise."""
    import csv
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as each torchrun process has
    try:
        # quantize-4 at MCS 9 without HARQ loses some of its payloads at 3.25 dB: which is the noise's choice
        for codec, knob, snr in (("shapes-jscc-awgn", {"symbols": [2, 4]}, [0.0, 8.0]),
                                 ("quantize-4", {"mcs": 9, "harq": 1}, [3.25, 3.75])):
            options = {"codec": codec, "channel": "awgn", "snr": snr, "limit": 10, "batch_size": 3,
                       "meteor": False, "progress": False, **knob}
            evaluate(**options, out=tmp_path / "one")
            cli = ["eval", "--codec", codec, "--channel", "awgn", "--snr", ",".join(map(str, snr)), "--limit", "10",
                   "--batch-size", "3",
                   "--no-meteor", *[x for k, v in knob.items() for x in (f"--{k}", ",".join(map(str, v))
                                                                         if isinstance(v, list) else str(v))]]
            two = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29518", "-m",
                                  "intelliflow.recipes.cli", *cli, "--out", str(tmp_path / "two")],
                                 capture_output=True, text=True, env=env, timeout=300)
            assert two.returncode == 0, two.stderr[-2000:]
            assert two.stdout.count("wrote") == 1                       # rank 0 reports, once
            rows = [list(csv.DictReader((tmp_path / run / "results.csv").open())) for run in ("one", "two")]
            assert len(rows[0]) == 2 * len(knob.get("symbols", [None])) and rows[0] == rows[1]
            captions = [json.loads((tmp_path / run / "captions.json").read_text()) for run in ("one", "two")]
            assert captions[0] == captions[1]
            assert len({r["CIDEr-D"] for r in rows[0]}) > 1              # the points differ: the noise matters
            assert codec != "quantize-4" or 0 < float(rows[0][0]["loss_rate"]) < 1   # 7 of 10 lost at 3.25 dB
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("codec", ["shapes-hyperprior", "jpeg-50"])
def test_worker_processes_read_and_preprocess_without_changing_a_result(codec, tmp_path):
    """With two DataLoader workers (they decode the images and, for a feature codec, run the model's
    preprocessing) the rows and captions are exactly those of the one-process path."""
    options = {"codec": codec, "limit": 12, "batch_size": 4, "meteor": False, "progress": False}
    alone = evaluate(**options, out=tmp_path / "alone")
    helped = evaluate(**options, out=tmp_path / "helped", workers=2)
    assert alone == helped
    assert (tmp_path / "alone" / "captions.json").read_text() == (tmp_path / "helped" / "captions.json").read_text()


def test_the_device_takes_preprocessed_pixels_only_for_a_feature_codec():
    import torch

    from intelliflow.codec import resolve_codec
    from intelliflow.data.shapes import make_sample
    from intelliflow.flow import Device
    from intelliflow.models import load_split_model

    model = load_split_model("shapes-captioner")
    images = [make_sample("test", i).image for i in range(2)]
    pixels = model.preprocess(images)
    with torch.no_grad():
        device = Device(model, resolve_codec("shapes-hyperprior"))
        assert device.encode(pixels, q=2).data == device.encode(images, q=2).data
        with pytest.raises(ConfigError, match="not preprocessed pixels"):
            Device(model, resolve_codec("jpeg-50")).encode(pixels)


def test_eval_loads_the_model_at_the_split_the_codec_was_trained_for(tmp_path):
    rows = evaluate(codec="shapes-hyperprior-k2", rate_points=[2.0], out=tmp_path / "k2", limit=4, meteor=False)
    assert [r["split"] for r in rows] == [2] and rows[0]["CIDEr-D"] > 1.0     # the k=2 codec at k=2 captions
    with pytest.raises(ConfigError, match="trained for split 2 .* split at 4"):
        evaluate(codec="shapes-hyperprior-k2", split=4, rate_points=[2.0], out=tmp_path / "k4", limit=4)
