"""Caption metrics agree with pycocoevalcap's COCOEvalCap pipeline; bad inputs fail clearly."""

import json

import pytest

from intelliflow.data.datasets import export_dataset
from intelliflow.data.shapes import ShapesDataset, make_sample
from intelliflow.errors import DatasetError, DatasetNotFoundError, MetricError
from intelliflow.evaluation import metrics as metrics_module
from intelliflow.evaluation.metrics import caption_metrics, score_files
from intelliflow.evaluation.tokenize import java_available

needs_java = pytest.mark.skipif(not java_available(), reason="java is not on PATH")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """40 shapes:test images in COCO format and a results file with a mix of good and bad captions."""
    out = tmp_path_factory.mktemp("shapes")
    export_dataset(ShapesDataset("test", limit=40), out)
    results = []
    for i in range(40):
        sample = make_sample("test", i)
        caption = sample.captions[i % 5] if i % 4 else "A big red circle, left of a (small) blue square."
        results.append({"image_id": i, "caption": caption})
    (out / "results.json").write_text(json.dumps(results))
    return out


def cocoevalcap_scores(annotations, results_path, monkeypatch):
    """pycocoevalcap's own pipeline (COCOEvalCap), with SPICE switched off (it downloads CoreNLP)."""
    import pycocoevalcap.eval as coco_eval
    from pycocotools.coco import COCO

    class NoSpice:
        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(gts)

        def method(self):
            return "SPICE"

    monkeypatch.setattr(coco_eval, "Spice", NoSpice)
    coco = COCO(str(annotations))
    coco_res = coco.loadRes(str(results_path))
    evaluator = coco_eval.COCOEvalCap(coco, coco_res)
    evaluator.params["image_id"] = coco_res.getImgIds()
    evaluator.evaluate()
    return evaluator.eval


@needs_java
def test_score_agrees_with_cocoevalcap_on_every_key(exported, monkeypatch):
    ours = score_files(exported / "results.json", exported / "annotations.json")
    theirs = cocoevalcap_scores(exported / "annotations.json", exported / "results.json", monkeypatch)
    mapping = {"BLEU-1": "Bleu_1", "BLEU-2": "Bleu_2", "BLEU-3": "Bleu_3", "BLEU-4": "Bleu_4",
               "METEOR": "METEOR", "ROUGE-L": "ROUGE_L", "CIDEr-D": "CIDEr"}
    for key, their_key in mapping.items():
        assert ours[key] == pytest.approx(theirs[their_key], abs=1e-6), key
    assert 0 < ours["CIDEr-D"] < 10 and 0 < ours["BLEU-4"] < 1
    # the shapes annotations carry scene graphs, so semantic scores come along
    assert 0.5 < ours["semantic_accuracy"] < 1.0
    assert ours["relation_accuracy"] is not None


def test_python_tokenizer_gives_the_same_scores_as_java_would(exported):
    with_python = score_files(exported / "results.json", exported / "annotations.json",
                              tokenizer="python", meteor=False)
    assert with_python["tokenizer"] == "python" and with_python["METEOR"] is None
    if java_available():
        with_java = score_files(exported / "results.json", exported / "annotations.json",
                                tokenizer="java", meteor=False)
        for key in ("BLEU-4", "ROUGE-L", "CIDEr-D"):
            assert with_python[key] == with_java[key]


def test_meteor_is_null_with_a_reason_without_java(monkeypatch):
    monkeypatch.setattr(metrics_module, "java_available", lambda: False)
    monkeypatch.setattr("intelliflow.evaluation.tokenize.java_available", lambda: False)
    scores = caption_metrics({1: "a red circle"}, {1: ["a red circle", "a red disc"]})
    assert scores["METEOR"] is None and "java" in scores["METEOR_reason"]
    assert scores["tokenizer"] == "python"
    assert scores["BLEU-1"] == pytest.approx(1.0)


@needs_java
def test_scoring_prints_nothing(capfd):
    """Neither the Java tokenizer's progress line nor the scorers' chatter reaches the terminal."""
    scores = caption_metrics({1: "a red circle", 2: "a blue square"},
                             {1: ["a red circle", "a red disc"], 2: ["a blue square"]}, tokenizer="java")
    assert scores["tokenizer"] == "java-ptb" and scores["METEOR"] is not None
    assert capfd.readouterr() == ("", "")


def test_identical_captions_score_higher_than_wrong_ones():
    refs = {i: make_sample("val", i).captions for i in range(30)}
    good = caption_metrics({i: r[0] for i, r in refs.items()}, {i: r[1:] for i, r in refs.items()}, meteor=False)
    bad = caption_metrics({i: "a small white star" for i in refs}, {i: r[1:] for i, r in refs.items()}, meteor=False)
    assert good["CIDEr-D"] > 3 * bad["CIDEr-D"] and good["BLEU-4"] > bad["BLEU-4"]


def test_missing_extra_and_duplicate_results_are_errors(exported, tmp_path):
    refs = {1: ["a red circle"], 2: ["a blue square"]}
    with pytest.raises(MetricError, match="no result"):
        caption_metrics({1: "a red circle"}, refs, meteor=False)
    with pytest.raises(MetricError, match="absent from the annotations"):
        caption_metrics({1: "x", 2: "y", 3: "z"}, refs, meteor=False)
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([{"image_id": 0, "caption": "a"}, {"image_id": 0, "caption": "b"}]))
    with pytest.raises(MetricError, match="more than one result"):
        score_files(dup, exported / "annotations.json")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([{"image_id": 0, "caption": "a red circle"}]))
    with pytest.raises(MetricError, match="39 annotated image"):
        score_files(partial, exported / "annotations.json")


def test_malformed_files_name_the_file(tmp_path, exported):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DatasetError, match="broken.json"):
        score_files(broken, exported / "annotations.json")
    with pytest.raises(DatasetNotFoundError, match="nothere.json"):
        score_files(exported / "results.json", tmp_path / "nothere.json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"caption": "x"}))
    with pytest.raises(DatasetError, match="list"):
        score_files(wrong, exported / "annotations.json")


@pytest.mark.parametrize("results,annotations,expected", [
    ([{"image_id": [1], "caption": "a"}], None, "entry 0 has image_id"),
    ([{"image_id": 1.5, "caption": "a"}], None, "expected an integer or a string"),
    ([{"image_id": 1, "caption": "word " * 500_000}], None, "at most 2000 characters"),
    (None, {"images": [{"id": [1]}], "annotations": []}, "image 0 has image_id"),
    (None, {"annotations": [{"image_id": {"a": 1}, "caption": "a"}]}, "annotation 0 has image_id"),
    (None, {"annotations": [{"image_id": 1, "caption": "word " * 2_000_000}]}, "got 10000000 characters"),
    (None, {"images": 5, "annotations": []}, "'images' list"),
    (None, {"annotations": [{"image_id": 1, "caption": "a"}], "scenes": [{"image_id": [1]}]}, "scene 0"),
    (None, {"annotations": [{"image_id": 1, "caption": "a"}], "scenes": [{"image_id": 1, "objects": 5}]},
     "malformed scene graph"),
])
def test_hostile_coco_files_are_one_line_errors_before_any_scoring(tmp_path, results, annotations, expected):
    """Wrong-typed ids, megabyte captions (results or references) and wrong-typed scenes are refused
    while the files are read, in one short line naming the file, before any scorer starts."""
    import time

    paths = []
    for name, data, default in (("r.json", results, [{"image_id": 1, "caption": "a red circle"}]),
                                ("a.json", annotations, {"annotations": [{"image_id": 1, "caption": "a red circle"}]})):
        (tmp_path / name).write_text(json.dumps(data if data is not None else default))
        paths.append(tmp_path / name)
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=expected) as info:
        score_files(*paths, meteor=False)
    assert time.perf_counter() - start < 5 and len(str(info.value)) < 300 and "\n" not in str(info.value)
