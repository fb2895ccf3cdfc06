"""``intelliflow demo``: the main job on the embedded default, with what the library has today.

At this stage of the project (foundation) the demo runs the parts that exist:

1. the ``shapes`` benchmark: renders the test split and draws a sheet of samples with captions;
2. its semantic entropy, the floor in bits per image for every codec;
3. the human-style ceiling of the caption metrics: each image's first reference caption scored
   against the other four (BLEU, METEOR, ROUGE-L, CIDEr-D, semantic accuracy), which checks the
   whole metric pipeline end to end;
4. the shipped captioner on clean features (no codec, no channel), when its weights are installed.

It writes ``samples.png``, ``results.json`` and ``summary.md`` to the output folder and prints the
summary. Split models, codecs and channels join the demo as they land.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm


def _sample_sheet(samples, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = (len(samples) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.4 * rows))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, sample in zip(axes.ravel(), samples):
        ax.imshow(sample.image)
        words = sample.captions[0].split()
        lines = [" ".join(words[i:i + 6]) for i in range(0, len(words), 6)]
        ax.set_title("\n".join(lines), fontsize=7)
    fig.suptitle("shapes:test - images and one of their five reference captions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out: str | Path = "runs/demo", quick: bool = False) -> int:
    """Run the demo; ``quick`` uses 200 test images instead of 1000."""
    from intelliflow.data.entropy import semantic_entropy_bits
    from intelliflow.data.shapes import ShapesDataset
    from intelliflow.evaluation.metrics import caption_metrics
    from intelliflow.evaluation.semantic import semantic_accuracy

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    n_images = 200 if quick else 1000
    dataset = ShapesDataset("test", limit=n_images)
    samples = [dataset[i] for i in tqdm(range(len(dataset)), desc="render shapes:test", unit="img")]
    render_s = time.perf_counter() - start
    _sample_sheet(samples[:8], out / "samples.png")

    entropy = semantic_entropy_bits()
    results = {s.image_id: s.captions[0] for s in samples}
    references = {s.image_id: s.captions[1:] for s in samples}
    metrics = caption_metrics(results, references)
    metrics.update(semantic_accuracy(results, {s.image_id: s.scene for s in samples}))
    report = {"n_images": n_images, "semantic_entropy_bits": entropy, "render_seconds": render_s,
              "reference_ceiling": metrics}

    keys = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "semantic_accuracy", "relation_accuracy")

    def row(name, scores):
        return f"| {name} | " + " | ".join("n/a" if scores.get(k) is None else f"{scores[k]:.3f}" for k in keys) + " |"

    rows = [row("references (ceiling)", metrics)]
    captioner_note = "The shipped captioner's weights are not installed; train them with `intelliflow train recipes/shapes/captioner.yaml`."
    try:
        from intelliflow.models import load_split_model

        from .evaluate import caption_dataset, score

        model = load_split_model("shapes-captioner")
    except Exception as exc:  # noqa: BLE001 - the demo reports what is missing and goes on
        captioner_note += f" ({exc})"
    else:
        results, references, scenes, _ = caption_dataset(model, dataset, batch_size=100, desc="shapes-captioner")
        model_scores = score(results, references, scenes)
        report["captioner"] = {"split": model.split, **model_scores}
        rows.append(row(f"shapes-captioner, clean features (k={model.split})", model_scores))
        (out / "captions.json").write_text(json.dumps(
            [{"image_id": i, "caption": c} for i, c in results.items()], indent=1))
        captioner_note = (f"The shipped captioner, split after encoder layer {model.split}, with clean features "
                          "(no codec, no channel) is the ceiling every codec is measured against.")
    report["seconds"] = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(report, indent=2))
    table = "| captions | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n" + "\n".join(rows)
    summary = f"""# intelliflow demo

- Benchmark: `shapes:test`, first {n_images} images, rendered in {render_s:.2f} s.
- Semantic entropy (exact): **{entropy:.3f} bits per image**: no codec can carry what a perfect
  caption says in fewer bits on average.
- Caption quality (references: the first reference scored against the other four; tokenizer
  `{metrics['tokenizer']}`):

{table}

{captioner_note}

Samples: `samples.png`. Feature codecs, channels and rate-quality curves join this demo as they
land.
"""
    (out / "summary.md").write_text(summary)
    print(summary)
    print(f"wrote {out / 'summary.md'}, {out / 'results.json'}, {out / 'samples.png'} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
