"""The intelliflow command: info, data export/info, score, demo, and its error handling."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from intelliflow.data.entropy import semantic_entropy_bits
from intelliflow.recipes.cli import main

SCRIPT = Path(sys.executable).parent / "intelliflow"


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def test_console_script_help_lists_the_commands():
    out = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("info", "demo", "data", "score"):
        assert command in out


def test_info_reports_versions(capsys):
    code, out, _ = run_cli(capsys, "info", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["torch"] and info["compressai"] and info["sionna"] and info["transformers"]
    assert isinstance(info["torch_threads"], int) and "java" in info


def test_data_info_prints_the_exact_entropy(capsys):
    code, out, _ = run_cli(capsys, "data", "info", "shapes", "--json")
    info = json.loads(out)
    assert code == 0 and info["entropy_bits"] == semantic_entropy_bits()
    assert info["splits"]["test"] == 1000 and info["splits"]["val"] == 500
    assert info["vocabulary_size"] > 40
    code, out, _ = run_cli(capsys, "data", "info", "shapes")
    assert f"{semantic_entropy_bits():.4f} bits per image" in out


def test_export_twice_is_byte_identical_and_scores_through_the_cli(tmp_path, capsys):
    for name in ("a", "b"):
        code, out, _ = run_cli(capsys, "data", "export", "shapes:test", "--out", str(tmp_path / name), "--limit", "25")
        assert code == 0 and "wrote 25 images" in out
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    annotations = json.loads((tmp_path / "a" / "annotations.json").read_text())
    assert len(annotations["images"]) == 25 and len(annotations["annotations"]) == 125
    assert len(annotations["scenes"]) == 25

    # results: the first reference of each image, so semantic accuracy is perfect
    first = {}
    for ann in annotations["annotations"]:
        first.setdefault(ann["image_id"], ann["caption"])
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in first.items()]))
    code, out, _ = run_cli(capsys, "score", "--results", str(results), "--annotations",
                           str(tmp_path / "a" / "annotations.json"), "--no-meteor", "--tokenizer", "python")
    scores = json.loads(out)
    assert code == 0
    assert set(scores) >= {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D",
                           "semantic_accuracy", "relation_accuracy"}
    assert scores["semantic_accuracy"] == 1.0 and scores["relation_accuracy"] == 1.0
    assert scores["BLEU-1"] == pytest.approx(1.0)  # every result is one of its references


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    code, out, err = run_cli(capsys, "score", "--results", str(tmp_path / "none.json"),
                             "--annotations", str(tmp_path / "none2.json"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "none.json" in err
    code, _, err = run_cli(capsys, "data", "export", "shapes:holdout", "--out", str(tmp_path))
    assert code == 2 and "shapes:test" in err
