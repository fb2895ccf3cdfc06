"""COCO-captions and Flickr8k loaders on tiny fixtures; errors name the file."""

import json

import pytest
from PIL import Image

from intelliflow.data.coco import CocoCaptions, Flickr8k
from intelliflow.data.datasets import export_dataset, open_dataset
from intelliflow.data.shapes import ShapesDataset
from intelliflow.errors import DatasetError, DatasetNotFoundError, RegistryError


def write_image(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path, format="PNG")  # lossless, whatever the name


@pytest.fixture
def coco_dir(tmp_path):
    for name, colour in (("a.jpg", "red"), ("b.jpg", "blue"), ("c.jpg", "green")):
        write_image(tmp_path / "val2014" / name, colour)
    ann = {"images": [{"id": 11, "file_name": "a.jpg"}, {"id": 12, "file_name": "b.jpg"},
                      {"id": 13, "file_name": "c.jpg"}],
           "annotations": [{"id": 1, "image_id": 11, "caption": "A red square."},
                           {"id": 2, "image_id": 11, "caption": "Red."},
                           {"id": 3, "image_id": 12, "caption": "A blue square."},
                           {"id": 4, "image_id": 13, "caption": "A green square."}]}
    (tmp_path / "captions.json").write_text(json.dumps(ann))
    karpathy = {"images": [{"cocoid": 11, "filepath": "val2014", "filename": "a.jpg", "split": "test"},
                           {"cocoid": 12, "filepath": "val2014", "filename": "b.jpg", "split": "restval"},
                           {"cocoid": 13, "filepath": "val2014", "filename": "c.jpg", "split": "train"}]}
    (tmp_path / "dataset_coco.json").write_text(json.dumps(karpathy))
    return tmp_path


def test_coco_loads_images_and_all_captions(coco_dir):
    ds = CocoCaptions(coco_dir / "captions.json", coco_dir / "val2014")
    assert len(ds) == 3
    sample = ds[0]
    assert sample.image_id == 11 and sample.captions == ["A red square.", "Red."]
    assert sample.image.mode == "RGB" and sample.image.getpixel((0, 0)) == (255, 0, 0)
    assert sample.scene is None


def test_coco_karpathy_splits(coco_dir):
    test = CocoCaptions(coco_dir / "captions.json", coco_dir, karpathy=coco_dir / "dataset_coco.json", split="test")
    assert [test[i].image_id for i in range(len(test))] == [11]
    train = CocoCaptions(coco_dir / "captions.json", coco_dir, karpathy=coco_dir / "dataset_coco.json", split="train")
    assert sorted(e[0] for e in train.entries) == [12, 13]  # train includes restval
    with pytest.raises(DatasetError, match="Karpathy split must be one of"):
        CocoCaptions(coco_dir / "captions.json", coco_dir, karpathy=coco_dir / "dataset_coco.json", split="dev")


def test_coco_errors_name_the_file(coco_dir):
    with pytest.raises(DatasetNotFoundError, match="nothing.json"):
        CocoCaptions(coco_dir / "nothing.json", coco_dir / "val2014")
    bad = coco_dir / "bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(DatasetError, match="bad.json"):
        CocoCaptions(bad, coco_dir / "val2014")
    bad.write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    with pytest.raises(DatasetError, match="malformed entry"):
        CocoCaptions(bad, coco_dir / "val2014")
    (coco_dir / "val2014" / "b.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="b.jpg"):
        CocoCaptions(coco_dir / "captions.json", coco_dir / "val2014")


def test_corrupt_image_is_a_clear_error(coco_dir):
    (coco_dir / "val2014" / "a.jpg").write_bytes(b"not an image")
    ds = CocoCaptions(coco_dir / "captions.json", coco_dir / "val2014")
    with pytest.raises(DatasetError, match="a.jpg"):
        ds[0]


@pytest.fixture
def flickr_dir(tmp_path):
    for name, colour in (("1_a.jpg", "red"), ("2_b.jpg", "blue")):
        write_image(tmp_path / "Flicker8k_Dataset" / name, colour)
    lines = [f"{n}#{k}\t{c} {k}" for n, c in (("1_a.jpg", "a red thing"), ("2_b.jpg", "a blue thing")) for k in range(5)]
    (tmp_path / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "Flickr_8k.testImages.txt").write_text("2_b.jpg\n")
    return tmp_path


def test_flickr8k_token_file_and_splits(flickr_dir):
    ds = Flickr8k(flickr_dir / "Flickr8k.token.txt", flickr_dir / "Flicker8k_Dataset")
    assert len(ds) == 2 and len(ds[0].captions) == 5 and ds[0].captions[0] == "a red thing 0"
    test = open_dataset(f"flickr8k:{flickr_dir}:test")
    assert len(test) == 1 and test[0].captions[4] == "a blue thing 4"
    assert test[0].image.getpixel((1, 1)) == (0, 0, 255)


def test_flickr8k_csv_form_and_errors(flickr_dir):
    csv_path = flickr_dir / "captions.txt"
    csv_path.write_text('image,caption\n1_a.jpg,"a red, round thing"\n2_b.jpg,a blue thing\n')
    ds = Flickr8k(csv_path, flickr_dir / "Flicker8k_Dataset")
    assert ds[0].captions == ["a red, round thing"]
    bad = flickr_dir / "bad.txt"
    bad.write_text("1_a.jpg a caption without a tab\n")
    with pytest.raises(DatasetError, match="bad.txt, line 1"):
        Flickr8k(bad, flickr_dir / "Flicker8k_Dataset")
    with pytest.raises(DatasetError, match="split must be one of"):
        Flickr8k(flickr_dir / "Flickr8k.token.txt", flickr_dir / "Flicker8k_Dataset", split="holdout")
    with pytest.raises(DatasetNotFoundError, match="Flickr_8k.trainImages.txt"):
        Flickr8k(flickr_dir / "Flickr8k.token.txt", flickr_dir / "Flicker8k_Dataset", split="train")


def test_exported_shapes_split_loads_back_with_scenes(tmp_path):
    original = ShapesDataset("val", limit=6)
    export_dataset(original, tmp_path / "val")
    loaded = open_dataset(f"coco:{tmp_path / 'val'}")
    assert len(loaded) == 6
    for k in range(6):
        a, b = original[k], loaded[k]
        assert a.image.tobytes() == b.image.tobytes()  # PNG is lossless
        assert a.captions == b.captions and a.scene == b.scene


def test_unknown_dataset_specs():
    with pytest.raises(RegistryError, match="shapes:test"):
        open_dataset("shapes:holdout")
    with pytest.raises(RegistryError, match="unknown dataset"):
        open_dataset("imagenet:/data")


def test_dataset_and_scorer_read_annotations_through_one_parser(coco_dir):
    from intelliflow.data.coco import parse_coco_annotations
    from intelliflow.evaluation.metrics import read_coco_annotations

    parsed = parse_coco_annotations(coco_dir / "captions.json")
    assert parsed.captions == {11: ["A red square.", "Red."], 12: ["A blue square."], 13: ["A green square."]}
    assert read_coco_annotations(coco_dir / "captions.json") == (parsed.captions, {})
    ds = CocoCaptions(coco_dir / "captions.json", coco_dir / "val2014")
    assert {e[0]: e[2] for e in ds.entries} == parsed.captions
    bad = coco_dir / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": [{"image_id": 1, "caption": 5}]}))
    for reader in (parse_coco_annotations, read_coco_annotations, lambda p: CocoCaptions(p, coco_dir / "val2014")):
        with pytest.raises(DatasetError, match="bad.json: annotation 0: the caption must be a string"):
            reader(bad)


def test_image_files_are_read_whole_or_refused_in_one_line(tmp_path):
    import numpy as np
    from PIL import Image

    from intelliflow.data import coco
    from intelliflow.data.coco import open_image

    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)     # a 16-bit grey ramp
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    image = np.asarray(open_image(tmp_path / "grey16.png"))
    assert image.shape == (64, 64, 3) and image.min() == 0 and 250 <= image.max() <= 255   # not all white
    assert image[0, 0, 0] < image[-1, -1, 0]
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="junk.png"):
        open_image(tmp_path / "junk.png")
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    limit, coco.MAX_IMAGE_PIXELS = coco.MAX_IMAGE_PIXELS, 200 * 200
    try:
        with pytest.raises(DatasetError, match="over the limit"):
            open_image(tmp_path / "big.png")
    finally:
        coco.MAX_IMAGE_PIXELS = limit


def test_results_files_with_odd_shapes_are_one_line_errors(tmp_path):
    import json

    from intelliflow.evaluation.metrics import read_coco_results

    for name, data, words in (("list_id.json", [{"image_id": [1], "caption": "a"}], "integer or a string"),
                              ("long.json", [{"image_id": 1, "caption": "word " * 100_000}], "at most"),
                              ("number.json", [{"image_id": 1, "caption": 5}], "string")):
        (tmp_path / name).write_text(json.dumps(data))
        with pytest.raises(DatasetError, match=words) as info:
            read_coco_results(tmp_path / name)
        assert len(str(info.value)) < 300
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match="nested too deeply"):
        read_coco_results(tmp_path / "deep.json")
