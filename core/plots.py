"""Writing figures: every plot of the library lands as a PNG the same way."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig`` tightly, write it to ``path`` (folders made as needed), close it; return the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
