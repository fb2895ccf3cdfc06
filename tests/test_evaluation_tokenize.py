"""The pure-Python PTB tokenizer yields Stanford PTBTokenizer's tokens on ordinary English."""

import pytest

from caption_corpus import CAPTIONS
from intelliflow.data.shapes import make_sample
from intelliflow.errors import MetricError
from intelliflow.evaluation.tokenize import (JavaPTBTokenizer, PythonPTBTokenizer, coco_tokenizer, java_available,
                                            ptb_tokenize_line)


@pytest.mark.skipif(not java_available(), reason="the reference tokenizer runs in Java")
def test_python_tokenizer_equals_java_ptbtokenizer_over_many_captions():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = list(CAPTIONS) + [c for i in range(120) for c in make_sample("val", i).captions]
    assert len(captions) > 700
    data = {k: [{"caption": c}] for k, c in enumerate(captions)}
    java, python = PTBTokenizer().tokenize(data), PythonPTBTokenizer().tokenize(data)
    mismatches = [(captions[k], java[k], python[k]) for k in data if java[k] != python[k]]
    assert not mismatches, mismatches[:5]


def test_rules_on_known_cases():
    assert ptb_tokenize_line("A man's dog doesn't like the cat (really).") == \
        ["a", "man", "'s", "dog", "does", "n't", "like", "the", "cat", "-lrb-", "really", "-rrb-", "."]
    assert ptb_tokenize_line("Mr. Smith paid $5 for 1,000 bananas at 10:30 in the U.S. today.") == \
        ["mr.", "smith", "paid", "$", "5", "for", "1,000", "bananas", "at", "10:30", "in", "the",
         "u.s.", "today", "."]
    assert PythonPTBTokenizer().tokenize({1: [{"caption": 'He said "hi", then left...'}]}) == \
        {1: ["he said hi then left"]}


@pytest.mark.skipif(not java_available(), reason="the reference tokenizer runs in Java")
def test_java_tokenizer_is_quiet_and_gives_pycocoevalcaps_tokens(capfd):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    data = {k: [{"caption": c}, {"caption": c.upper()}] for k, c in enumerate(list(CAPTIONS)[:50] + ["", "a\nb"])}
    ours = JavaPTBTokenizer().tokenize(data)
    assert capfd.readouterr().err == ""
    theirs = PTBTokenizer().tokenize(data)
    assert "PTBTokenizer tokenized" in capfd.readouterr().err  # what pycocoevalcap lets through
    assert ours == theirs
    assert isinstance(coco_tokenizer("java"), JavaPTBTokenizer)


@pytest.mark.skipif(not java_available(), reason="the reference tokenizer runs in Java")
def test_java_tokenizer_failure_is_an_error_with_javas_message(monkeypatch):
    from pycocoevalcap.tokenizer import ptbtokenizer

    monkeypatch.setattr(ptbtokenizer, "STANFORD_CORENLP_3_4_1_JAR", "no-such.jar")
    with pytest.raises(MetricError, match="PTBTokenizer failed.*PTBTokenizer"):  # Java names the missing class
        JavaPTBTokenizer().tokenize({1: [{"caption": "a red circle"}]})
