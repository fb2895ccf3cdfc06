"""Caption tokenisation as COCO's evaluation does it.

pycocoevalcap tokenises references and results with Stanford's PTBTokenizer (``-preserveLines
-lowerCase``, a Java program) and then drops punctuation tokens. :class:`PythonPTBTokenizer` is a
pure-Python stand-in used when ``java`` is not on PATH: a small set of rules that reproduce
PTBTokenizer 3.4.1's tokens on ordinary English captions (contractions, quotes, brackets, commas,
sentence-final periods, abbreviations, numbers, hyphens). ``tests/test_evaluation_tokenize.py``
checks the equality against the Java tokenizer over many captions. It is written here because no
maintained Python package reproduces that exact tokenizer version (NLTK's Treebank tokenizer
differs on brackets, quotes and abbreviations).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

# The punctuation tokens pycocoevalcap removes after tokenising (its PUNCTUATIONS list).
PUNCTUATION_TOKENS = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                      ".", "?", "!", ",", ":", "-", "--", "...", ";"}

# Abbreviations that keep their period (PTBTokenizer 3.4.1, lower-cased).
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "inc", "corp", "ltd", "co",
    "mt", "ave", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "gen", "gov", "sen", "rep", "rev", "capt", "col", "lt", "sgt", "fig", "dept", "univ", "bros",
}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_SPLIT_WORDS = {"cannot": "can not", "gonna": "gon na", "gotta": "got ta", "wanna": "wan na",
                "lemme": "lem me", "gimme": "gim me"}
_CONTRACTION = re.compile(r"^(.*[a-z])(n't|'s|'re|'ve|'ll|'d|'m)$")
_ACRONYM = re.compile(r"^(?:[a-z]\.)+(?:[a-z])?\.?$")


def java_available() -> bool:
    """Whether ``java`` is on PATH (PTBTokenizer and METEOR need it)."""
    return shutil.which("java") is not None


def _split_word(word: str, line_end: bool) -> list[str]:
    """Tokens of one whitespace-separated word (already lower-cased)."""
    if not word:
        return []
    head: list[str] = []
    tail: list[str] = []
    # opening quotes and brackets
    while word and (word[0] in "\"`(" "[{" or (word[0] == "'" and not re.match(r"^'(\d0s|n'|s\b|t)", word))):
        head.append(_BRACKETS.get(word[0], "``" if word[0] in "\"`" else "`"))
        word = word[1:]
    # closing punctuation, quotes and brackets
    while word:
        if word.endswith("..."):
            tail.insert(0, "...")
            word = word[:-3]
        elif word[-1] in ")]}":
            tail.insert(0, _BRACKETS[word[-1]])
            word = word[:-1]
        elif word[-1] == '"':
            tail.insert(0, "''")
            word = word[:-1]
        elif word[-1] in ",;:":
            tail.insert(0, word[-1])
            word = word[:-1]
        elif word[-1] in "!?":
            run = re.search(r"[!?]+$", word).group(0)
            tail.insert(0, run)
            word = word[: -len(run)]
        elif word[-1] == "'" and not word.endswith("n'") and len(word) > 1:
            tail.insert(0, "'")
            word = word[:-1]
        elif word[-1] == "." and word not in (".",):
            stem = word[:-1]
            keeps = stem in _ABBREVIATIONS or _ACRONYM.match(word) is not None
            if line_end and len(stem) == 1:  # "a." closing a line loses its period
                keeps = False
            if keeps and not tail and not line_end:
                break
            if keeps:  # an abbreviation ending a line keeps its period and gets another one
                tail.insert(0, ".")
                break
            tail.insert(0, ".")
            word = stem
        else:
            break
    middle: list[str] = []
    if word:
        middle = _split_middle(word)
    return head + middle + tail


def _split_middle(word: str) -> list[str]:
    """Split inside a word: commas/semicolons (not in numbers), brackets, $, %, +, contractions."""
    parts = re.split(r"((?<!\d),|,(?!\d)|;|[()\[\]{}]|\$|%|\+|(?<=\d)(?=(?:am|pm)$))", word)
    tokens: list[str] = []
    for part in parts:
        if not part:
            continue
        if part in _BRACKETS:
            tokens.append(_BRACKETS[part])
        elif part in _SPLIT_WORDS:
            tokens.extend(_SPLIT_WORDS[part].split())
        elif part == "-" or part.startswith("-") and len(part) > 1 and part[1].isalpha():
            tokens.extend(["-", part[1:]] if len(part) > 1 else ["-"])
        else:
            match = _CONTRACTION.match(part)
            tokens.extend([match.group(1), match.group(2)] if match else [part])
    return tokens


def ptb_tokenize_line(line: str) -> list[str]:
    """Tokens of one caption, as PTBTokenizer ``-preserveLines -lowerCase`` gives them."""
    line = line.lower().replace("\u2014", " -- ").replace("\u2013", " -- ").replace("\u2026", "...")
    line = line.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    words = line.split()
    tokens: list[str] = []
    for k, word in enumerate(words):
        tokens.extend(_split_word(word, line_end=k == len(words) - 1))
    return tokens


class PythonPTBTokenizer:
    """Drop-in for pycocoevalcap's ``PTBTokenizer`` that needs no Java.

    :input captions_for_image: ``{image_id: [{"caption": str}, ...]}``
    :output: ``{image_id: [tokenised caption, ...]}`` with punctuation tokens removed.
    """

    def tokenize(self, captions_for_image: dict) -> dict:
        out: dict = {}
        for image_id, captions in captions_for_image.items():
            for c in captions:
                tokens = ptb_tokenize_line(c["caption"].replace("\n", " "))
                out.setdefault(image_id, []).append(
                    " ".join(t for t in tokens if t not in PUNCTUATION_TOKENS))
        return out


# What PTBTokenizer prints on stderr after every run, e.g.
# "PTBTokenizer tokenized 1879 tokens at 15455.72 tokens per second."
_JAVA_PROGRESS = re.compile(r"^PTBTokenizer tokenized \d+ tokens at [\d.,]+ tokens per second\.$")


class JavaPTBTokenizer:
    """pycocoevalcap's ``PTBTokenizer`` (the same jar, command and post-processing, so the same
    tokens), run quietly.

    pycocoevalcap lets the Java process write a ``PTBTokenizer tokenized N tokens at ...`` line
    straight to the terminal on every call and ignores its exit status. Here the process's stderr is
    captured: that progress line is dropped, any other line is passed on to ``sys.stderr``, and a
    failed run (non-zero exit, or fewer output lines than captions) is a
    :class:`~intelliflow.errors.MetricError` carrying what Java said. The temporary input file goes
    to the system's temporary folder instead of pycocoevalcap's package folder.

    :input captions_for_image: ``{image_id: [{"caption": str}, ...]}``
    :output: ``{image_id: [tokenised caption, ...]}`` with punctuation tokens removed.
    """

    def tokenize(self, captions_for_image: dict) -> dict:
        from pycocoevalcap.tokenizer import ptbtokenizer as ptb

        from intelliflow.errors import MetricError

        image_ids = [k for k, v in captions_for_image.items() for _ in range(len(v))]
        sentences = "\n".join(c["caption"].replace("\n", " ") for v in captions_for_image.values() for c in v)
        jar_dir = os.path.dirname(os.path.abspath(ptb.__file__))
        with tempfile.NamedTemporaryFile(delete=False, suffix=".txt") as tmp:
            tmp.write(sentences.encode())
        try:
            run = subprocess.run(["java", "-cp", ptb.STANFORD_CORENLP_3_4_1_JAR,
                                  "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
                                  tmp.name], cwd=jar_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        finally:
            os.remove(tmp.name)
        said = [line for line in run.stderr.decode(errors="replace").splitlines()
                if line.strip() and not _JAVA_PROGRESS.match(line.strip())]
        lines = run.stdout.decode().split("\n")
        if run.returncode != 0 or len(lines) < len(image_ids):
            raise MetricError(f"Java PTBTokenizer failed (exit status {run.returncode}, {len(lines)} lines for "
                              f"{len(image_ids)} captions): {' / '.join(said) or 'no message'}")
        for line in said:
            print(f"PTBTokenizer: {line}", file=sys.stderr)
        out: dict = {}
        for image_id, line in zip(image_ids, lines):
            out.setdefault(image_id, []).append(
                " ".join(w for w in line.rstrip().split(" ") if w not in ptb.PUNCTUATIONS))
        return out


def coco_tokenizer(prefer: str = "auto"):
    """The tokenizer to use: ``"java"`` (pycocoevalcap's PTBTokenizer, run quietly by
    :class:`JavaPTBTokenizer`), ``"python"``, or ``"auto"`` (Java when ``java`` is on PATH).

    >>> type(coco_tokenizer("python")).__name__
    'PythonPTBTokenizer'
    """
    if prefer not in ("auto", "java", "python"):
        raise ValueError(f"tokenizer must be 'auto', 'java' or 'python', got {prefer!r}")
    if prefer == "java" or (prefer == "auto" and java_available()):
        return JavaPTBTokenizer()
    return PythonPTBTokenizer()
