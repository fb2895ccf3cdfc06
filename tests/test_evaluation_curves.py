"""Rate-quality summaries and plots from results.csv files."""

import csv

import pytest

from intelliflow.errors import DatasetNotFoundError
from intelliflow.evaluation.curves import bits_to_reach, plot_curves, summarize
from intelliflow.evaluation.results import COLUMNS as RESULT_COLUMNS, load_results
from intelliflow.recipes.cli import main


def write(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)


def row(method, kind, bits, cider, channel="none", snr="", uses=""):
    return {"method": method, "codec": method, "kind": kind, "dataset": "shapes:test", "channel": channel,
            "snr_db": snr, "payload_bits": bits, "channel_uses": uses, "CIDEr-D": cider, "semantic_accuracy": cider / 3}


def test_bits_to_reach_interpolates_log_linearly_and_says_never():
    curve = [(100.0, 1.0), (400.0, 2.0), (1600.0, 3.0)]
    assert bits_to_reach(curve, 1.5) == pytest.approx(200.0)
    assert bits_to_reach(curve, 0.5) == 100.0
    assert bits_to_reach(curve, 3.5) is None


def test_summary_ratios_and_plot(tmp_path):
    write(tmp_path / "a", [row("identity", "identity", 393216, 2.0),
                           row("ours", "learned", 100, 1.0), row("ours", "learned", 200, 2.0),
                           row("jpeg", "bytes", 3000, 1.5), row("jpeg", "bytes", 6000, 2.0),
                           row("mse-codec", "learned", 500, 0.5)])
    write(tmp_path / "b", [row("ours", "learned", 200, 1.8, "awgn", 0, 300), row("ours", "learned", 200, 2.0, "awgn", 10, 120)])
    rows = load_results([tmp_path])
    assert len(rows) == 8 and rows[0]["payload_bits"] == 393216.0
    table = {t["method"]: t for t in summarize(rows)}
    assert table["ours"]["ours"] and table["ours"]["bits_to_target"] == pytest.approx(100 * 2 ** (0.9))
    assert table["jpeg"]["ratio_to_ours"] == pytest.approx(bits_to_reach([(3000, 1.5), (6000, 2.0)], 1.9)
                                                           / table["ours"]["bits_to_target"])
    assert table["mse-codec"]["bits_to_target"] is None and table["mse-codec"]["ratio_to_ours"] is None
    png = plot_curves(rows, tmp_path / "plot.png", floor_bits=15.6)
    assert png.stat().st_size > 20_000
    # results on the ideal link alone: the payload panels only, no empty SNR and channel-use panels
    from PIL import Image

    ideal = plot_curves([r for r in rows if r["channel"] == "none"], tmp_path / "ideal.png")
    (width, height), (_, full_height) = Image.open(ideal).size, Image.open(png).size
    assert height < 0.6 * full_height and width > 2 * height
    assert main(["curve", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.png")]) == 0
    text = (tmp_path / "c.md").read_text()
    assert "| **ours** (ours) |" in text and "Semantic-entropy floor: 15.6" in text
    with pytest.raises(DatasetNotFoundError):
        load_results([tmp_path / "nothing"])


def test_the_channel_uses_panel_marks_the_shannon_limit_of_the_semantic_entropy_per_snr():
    """One limit per channel and SNR: the semantic entropy over the channel's capacity (1 bit per use
    at 0 dB on AWGN; the ergodic Rayleigh capacity below AWGN's at 10 dB), none for a channel without
    a closed form, none without a floor."""
    from intelliflow.channels.capacity import capacity
    from intelliflow.evaluation.curves import shannon_limits

    rows = [{"channel": c, "snr_db": s} for c in ("awgn", "rayleigh", "ofdm-tdl") for s in (0.0, 10.0)]
    rows.append({"channel": "none", "snr_db": None})
    limits = {(c, s): n for c, s, n in shannon_limits(rows, 15.6)}
    assert set(limits) == {("awgn", 0.0), ("awgn", 10.0), ("rayleigh", 0.0), ("rayleigh", 10.0)}
    assert limits[("awgn", 0.0)] == 15.6
    assert limits[("rayleigh", 10.0)] == 15.6 / capacity(10.0, "rayleigh") > limits[("awgn", 10.0)]
    assert shannon_limits(rows, None) == []


def test_summary_gives_bits_to_semantic_accuracy_and_the_best_image_baseline(tmp_path):
    from intelliflow.evaluation.curves import format_summary

    def r(method, codec, kind, bits, cider, semantic):
        return {**row(method, kind, bits, cider), "codec": codec, "semantic_accuracy": semantic}

    write(tmp_path / "a", [r("identity", "identity", "identity", 393216, 2.0, 0.99),
                           r("ours", "shapes-hyperprior", "learned", 100, 1.9, 0.90),
                           r("ours", "shapes-hyperprior", "learned", 200, 2.0, 0.98),
                           r("jpeg", "jpeg-10", "bytes", 3000, 1.95, 0.96),
                           r("jp2k", "jp2k-100", "bytes", 1000, 1.5, 0.90),
                           r("jp2k", "jp2k-20", "bytes", 4000, 2.0, 0.99),
                           r("text", "text", "bytes", 300, 2.0, 0.99)])
    rows = load_results([tmp_path])
    table = {t["method"]: t for t in summarize(rows, ours="ours")}
    assert table["jpeg"]["image"] and table["jp2k"]["image"] and not table["text"]["image"]
    assert not table["ours"]["image"]
    assert table["ours"]["bits_to_semantic"] == pytest.approx(bits_to_reach([(100, 0.90), (200, 0.98)], 0.95))
    assert table["jpeg"]["bits_to_semantic"] == 3000
    assert table["jpeg"]["semantic_ratio_to_ours"] == pytest.approx(3000 / table["ours"]["bits_to_semantic"])
    text = format_summary(list(table.values()), 2.0, 15.6)
    # the best image baseline per target: jp2k reaches 0.95 semantic accuracy between its points, with fewer
    # bits than jpeg; jpeg reaches the CIDEr-D target (1.9) first
    jp2k = bits_to_reach([(1000, 0.90), (4000, 0.99)], 0.95)
    assert f"0.95 semantic accuracy: the best image baseline is jp2k with {jp2k:.0f} bits" in text
    assert "the CIDEr-D target: the best image baseline is jpeg with 3000 bits" in text
    assert "| jp2k (image) |" in text and "| text |" in text


def test_split_table_counts_each_split_apart_and_compares_with_the_baseline_at_the_same_split(tmp_path):
    from intelliflow.evaluation.curves import format_split_table, plot_split_table, split_table

    def at(method, split, bits, cider):
        return {**row(method, "learned", bits, cider), "split": split}

    rows = [{**row("identity", "identity", 393216, 2.0), "split": 4},
            at("ours", 4, 40, 1.0), at("ours", 4, 80, 2.0),
            at("ours-k0", 0, 100, 1.0), at("ours-k0", 0, 400, 2.0),
            at("mse-k0", 0, 1000, 1.0), at("mse-k0", 0, 4000, 2.0),
            at("mse", 4, 400, 1.0), at("mse", 4, 800, 1.5)]            # never reaches the target at k=4
    table = split_table(rows, {0: 25e6, 4: 250e6}, {"ours": 5e6, "ours-k0": 5e6}, baseline="mse")
    assert [(t["family"], t["split"]) for t in table] == [("mse", 0), ("mse", 4), ("ours", 0), ("ours", 4)]
    by = {(t["family"], t["split"]): t for t in table}
    assert by[("ours", 0)]["bits_to_target"] == pytest.approx(100 * 4 ** 0.9)     # 1.9 on its own curve
    assert by[("ours", 4)]["bits_to_target"] == pytest.approx(40 * 2 ** 0.9)
    assert by[("ours", 0)]["x_baseline"] == pytest.approx(10.0)                   # mse-k0 needs 10x the bits
    assert by[("ours", 4)]["x_baseline"] is None and by[("mse", 4)]["bits_to_target"] is None
    assert by[("ours", 0)]["device_flops"] == 30e6 and by[("mse", 4)]["device_flops"] == 250e6
    text = format_split_table(table, floor_bits=15.6)
    assert "| ours-k0 | 0 | 30 (25 + 5) |" in text and "not reached" in text
    assert plot_split_table(table, tmp_path / "k.png", floor_bits=15.6).stat().st_size > 10_000
