"""The README's Python examples run as written (in a folder holding a tiny local BLIP and COCO set)."""

import json
import re
from pathlib import Path

from PIL import Image

from tiny_models import tiny_blip

README = Path(__file__).parent.parent / "README.md"


def readme_blocks() -> list[str]:
    return re.findall(r"<!-- readme-test -->\n```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    blocks = readme_blocks()
    assert len(blocks) == 3
    model, tokenizer = tiny_blip()
    model.save_pretrained(tmp_path / "my-blip")
    tokenizer.save_pretrained(tmp_path / "my-blip")
    (tmp_path / "my-coco" / "images").mkdir(parents=True)
    annotations = {"images": [], "annotations": []}
    for i in range(4):
        Image.new("RGB", (48, 40), (50 * i, 90, 200 - 30 * i)).save(tmp_path / "my-coco" / "images" / f"{i}.jpg")
        annotations["images"].append({"id": i, "file_name": f"{i}.jpg"})
        annotations["annotations"] += [{"id": 10 * i + j, "image_id": i, "caption": f"a red circle {j}"}
                                       for j in range(2)]
    (tmp_path / "my-coco" / "annotations.json").write_text(json.dumps(annotations))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "runs" / "my-codec" / "codec" / "config.json").is_file()
    assert len(namespace["result"].captions) == 1 and namespace["result"].channel_uses[0] > 0
    assert (tmp_path / "runs" / "curves.png").stat().st_size > 10_000
    methods = {r["method"] for r in namespace["rows"]}
    assert methods == {str(namespace["codec_dir"]), "jpeg-30"}


def test_readme_bridge_example_runs(tmp_path, monkeypatch, capsys):
    """The README's codec-in-any-model example: ResNet-18, a codec and a channel, a few steps of training."""
    (block,) = re.findall(r"<!-- readme-test: bridge -->\n```python\n(.*?)```", README.read_text(), flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert 12_000 < float(printed[0]) < 14_000                    # "about 12,900" quantize-8 bits per image
    assert (tmp_path / "runs" / "resnet18-codec" / "codec" / "config.json").is_file()
    link = namespace["link"]
    assert namespace["logits"].shape == (8, 6) and link.last.lost == [False] * 8
    assert link.last.bits == [8 * len(p) for p in link.last_sent.data]
    digital = link.flow.link    # every transmission of a payload costs its channel uses at its MCS
    assert all(u >= digital.channel_uses(len(p), m) for u, p, m in
               zip(link.last.channel_uses, link.last_sent.data, link.last.mcs))
