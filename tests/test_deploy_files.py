""".iflow files: encode on the device, decode on the receiver, damaged files fail alone."""

import json

import pytest

from intelliflow.deploy.container import pack_iflow, unpack_iflow
from intelliflow.data.shapes import make_sample
from intelliflow.errors import BitstreamError
from intelliflow.recipes.cli import main
from test_models_split import tiny_shapes_captioner


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    tiny_shapes_captioner().save(root / "model")
    for i in range(2):
        make_sample("test", i).image.save(root / f"img{i}.png")
    return root


def test_container_round_trip_and_errors():
    data = pack_iflow("shapes-captioner", 4, "quantize-8", b"\xa3payload")
    parsed = unpack_iflow(data)
    assert (parsed.model, parsed.split, parsed.codec, parsed.payload) == ("shapes-captioner", 4, "quantize-8", b"\xa3payload")
    for bad in (b"", b"XX\x01", data[:6], b"IF\x09" + data[3:], data[:data.index(b"quantize") + 3]):
        with pytest.raises(BitstreamError):
            unpack_iflow(bad)


def test_stream_file_round_trip_and_errors():
    from intelliflow.deploy.container import pack_stream_file, unpack_stream_file

    data = pack_stream_file("shapes-captioner", 4, "shapes-hyperprior", b"HEAD", [b"\x01\x02", b"", b"x" * 300])
    parsed = unpack_stream_file(data)
    assert (parsed.model, parsed.split, parsed.codec, parsed.header) == ("shapes-captioner", 4, "shapes-hyperprior", b"HEAD")
    assert parsed.payloads == [b"\x01\x02", b"", b"x" * 300] and parsed.bits == [16, 0, 2400]
    assert unpack_stream_file(pack_stream_file("m", 0, "c", b"H", [])).payloads == []   # the service's handshake
    for bad in (b"", data[:-1], b"IF" + data[2:], data[:5] + bytes([data[5] ^ 1]) + data[6:]):
        with pytest.raises(BitstreamError):
            unpack_stream_file(bad)


def test_a_stream_file_holds_the_same_captions_without_repeating_the_context(setup, capsys):
    from intelliflow.codec import resolve_codec
    from intelliflow.codec.bitstream import StreamContext, stream_header
    from intelliflow.deploy.container import pack_stream_file, unpack_stream_file
    from intelliflow.deploy.files import FileDecoder
    from intelliflow.errors import PayloadMismatchError

    images = [str(setup / "img0.png"), str(setup / "img1.png")]
    codec = ["--codec", "shapes-hyperprior", "--q", "2"]
    assert main(["encode", *images, *codec, "--out", str(setup / "single")]) == 0
    assert main(["encode", *images, *codec, "--stream", str(setup / "all.iflows")]) == 0
    capsys.readouterr()
    assert main(["decode", *map(str, sorted((setup / "single").glob("*.iflow"))), "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert main(["decode", str(setup / "all.iflows"), "--json"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in streamed] == [f"{setup / 'all.iflows'}[{i}]" for i in range(2)]
    assert [r["caption"] for r in streamed] == [r["caption"] for r in single]
    assert [r["bits"] for r in streamed] == [r["bits"] - 48 for r in single]   # no header, no CRC-16 per image
    # a stream header keyed by other weights (the mse-codec's) is refused before any image
    parsed = unpack_stream_file((setup / "all.iflows").read_bytes())
    foreign = stream_header(StreamContext(2, 8, 8, 32), resolve_codec("shapes-mse-codec").fingerprint)
    with pytest.raises(PayloadMismatchError, match="not written by"):
        FileDecoder().decode_stream(pack_stream_file(parsed.model, parsed.split, parsed.codec, foreign, parsed.payloads))


@pytest.mark.parametrize("codec", ["identity", "quantize-8", "jpeg-90", "text"])
def test_encode_then_decode_gives_the_clean_caption(setup, codec, capsys):
    out = setup / f"out-{codec}"
    model = str(setup / "model")
    assert main(["encode", str(setup / "img0.png"), str(setup / "img1.png"), "--model", model,
                 "--codec", codec, "--out", str(out)]) == 0
    capsys.readouterr()
    files = sorted(out.glob("*.iflow"))
    assert len(files) == 2
    assert main(["decode", *map(str, files), "--model", model, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in rows] == [str(f) for f in files]
    if codec in ("identity", "text"):  # lossless: exactly the clean model's caption
        from intelliflow.models import load_split_model
        from PIL import Image
        clean = load_split_model(model).caption([Image.open(setup / "img0.png").convert("RGB")])[0]
        assert rows[0]["caption"] == clean
    assert all(r["bits"] > 0 for r in rows)


def test_a_damaged_file_fails_alone_with_its_name(setup, capsys):
    out = setup / "damaged"
    assert main(["encode", str(setup / "img0.png"), str(setup / "img1.png"), "--model", str(setup / "model"),
                 "--codec", "quantize-6", "--out", str(out)]) == 0
    good, bad = sorted(out.glob("*.iflow"))
    data = bytearray(bad.read_bytes())
    data[-5] ^= 0x10
    bad.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["decode", str(good), str(bad), "--model", str(setup / "model")]) == 2
    captured = capsys.readouterr()
    assert str(good) in captured.out
    assert captured.err.count("\n") == 1 and str(bad) in captured.err and "integrity" in captured.err


def test_models_with_a_cls_token_send_it_beside_the_grid(tmp_path, capsys):
    from tiny_models import tiny_blip

    model, tokenizer = tiny_blip()
    model.save_pretrained(tmp_path / "blip")
    tokenizer.save_pretrained(tmp_path / "blip")
    image = tmp_path / "img.png"
    make_sample("test", 3).image.save(image)
    assert main(["encode", str(image), "--model", str(tmp_path / "blip"), "--split", "1",
                 "--codec", "identity", "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "out" / "img.iflow"), "--model", str(tmp_path / "blip"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    import torch
    from PIL import Image

    from intelliflow.codec.baselines import QuantizeCodec
    from intelliflow.models import load_split_model

    blip = load_split_model(tmp_path / "blip", split=1)
    with torch.no_grad():
        features = blip.head(blip.preprocess([Image.open(image).convert("RGB")]))
        eight_bit = QuantizeCodec(8)  # the CLS token travels at 8 bits beside the identity-coded grid
        cls = eight_bit.decode(eight_bit.encode(features[:, :1].transpose(1, 2).unsqueeze(-1)))
        received = torch.cat([cls.squeeze(-1).transpose(1, 2), features[:, 1:]], dim=1)
        expected = blip.tail_generate(received)[0]
    assert row["caption"] == expected
    assert row["bits"] > 8 * (4 + 16 * 32 * 4)  # the grid's float32 values plus the prefix part


def test_the_whole_file_is_checked_so_a_flipped_header_bit_never_decodes(setup, capsys):
    """Every single-bit flip of a file, header included, is refused: none decodes to another
    split point's or codec's caption."""
    out = setup / "flips"
    assert main(["encode", str(setup / "img0.png"), "--model", str(setup / "model"), "--codec", "quantize-8",
                 "--out", str(out)]) == 0
    data = (out / "img0.iflow").read_bytes()
    for i in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            unpack_iflow(bytes(flipped))


def test_names_in_a_file_are_identifiers_and_never_make_the_receiver_load_a_folder(setup, capsys):
    from intelliflow.deploy.files import FileDecoder
    from intelliflow.errors import ConfigError, PayloadMismatchError

    out = setup / "names"
    assert main(["encode", str(setup / "img0.png"), "--model", str(setup / "model"), "--codec", "text",
                 "--out", str(out)]) == 0
    data = (out / "img0.iflow").read_bytes()
    assert unpack_iflow(data).model == "model"                 # the folder's name, not its path
    with pytest.raises(PayloadMismatchError, match="not configured"):
        FileDecoder().decode(data)                             # an unconfigured receiver loads no folder
    assert FileDecoder(model=str(setup / "model")).decode(data)[0]
    assert unpack_iflow(pack_iflow("../../shapes-captioner", 4, "text", b"x")).model == "shapes-captioner"
    for name in ("..", "a" * 300, "two words", ".hidden"):
        with pytest.raises(ConfigError, match="identifier"):
            pack_iflow(name, 4, "text", b"x")
    forged = b"IF\x02\x0b../../model\x04\x04text" + b"x"
    import zlib
    with pytest.raises(BitstreamError, match="not an identifier"):
        unpack_iflow(forged + zlib.crc32(forged).to_bytes(4, "big"))


def test_encode_never_overwrites_silently(setup, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        make_sample("test", 0).image.save(tmp_path / folder / "x.png")
    out = tmp_path / "out"
    args = ["--model", str(setup / "model"), "--codec", "quantize-8", "--out", str(out)]
    assert main(["encode", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), *args]) == 2
    err = capsys.readouterr().err   # the first is written, the second (same output name) is refused
    assert err.count("\n") == 1 and str(tmp_path / "b" / "x.png") in err and "rename one" in err
    first = (out / "x.iflow").read_bytes()
    make_sample("test", 1).image.save(tmp_path / "b" / "x.png")
    assert main(["encode", str(tmp_path / "b" / "x.png"), *args]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "x.iflow").read_bytes() == first
    assert main(["encode", str(tmp_path / "b" / "x.png"), *args, "--overwrite"]) == 0
    assert (out / "x.iflow").read_bytes() != first


@pytest.mark.parametrize("command", ["encode", "caption"])
def test_a_bad_image_fails_alone_in_one_line_with_exit_code_2(setup, tmp_path, capsys, command):
    """A missing file, a file that is not an image and a decompression bomb are each reported in one
    line naming the file; the good images around them are still encoded or captioned."""
    from PIL import Image

    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")   # 400 Mpixel, a few kB on disk
    inputs = [setup / "img0.png", tmp_path / "junk.png", tmp_path / "missing.png", tmp_path / "bomb.png",
              setup / "img1.png"]
    args = ["--model", str(setup / "model")] + (["--codec", "text", "--out", str(tmp_path / "out")]
                                                if command == "encode" else ["--json"])
    assert main([command, *map(str, inputs), *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 3 and "Traceback" not in captured.err
    for bad in inputs[1:4]:
        assert f"intelliflow {command}: {bad}: " in captured.err
    if command == "encode":
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.iflow", "img1.iflow"]
    else:
        assert [r["image"] for r in json.loads(captured.out)] == [str(inputs[0]), str(inputs[4])]


def test_a_learned_codec_decodes_only_the_split_it_was_trained_for():
    from intelliflow.deploy.files import FileDecoder, FileEncoder
    from intelliflow.errors import PayloadMismatchError

    (data,) = FileEncoder("shapes-captioner", "shapes-hyperprior").encode([make_sample("test", 0).image])
    parsed = unpack_iflow(data)
    forged = pack_iflow(parsed.model, 0, parsed.codec, parsed.payload)  # every check recomputed, split 4 -> 0
    with pytest.raises(PayloadMismatchError, match="trained for split 4"):
        FileDecoder().decode(forged)
    assert FileDecoder().decode(data)[0]
