"""Endless training batches of images (with their scenes or reference captions) for the runners."""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader

from intelliflow.data.sample import collate_samples


class ImageBatches:
    """Endless training batches: the shapes stream, or a shuffled local dataset (its images read and
    decoded by ``workers`` DataLoader processes); each rank its own."""

    def __init__(self, spec: str, batch_size: int, seed: int, rank: int, start_batch: int, workers: int = 0):
        from intelliflow.data.shapes import ShapesConfig, ShapesStream

        if spec == "shapes":
            stream = ShapesStream(ShapesConfig(seed=seed + 10_000_000 * rank), start=start_batch * batch_size)
            # its own generator: creating the loader must not draw from torch's global RNG (resume)
            self._iter = iter(DataLoader(stream, batch_size=batch_size, collate_fn=collate_samples,
                                         generator=torch.Generator().manual_seed(seed)))
            return
        from intelliflow.data.datasets import open_dataset

        self._iter = shuffled_batches(open_dataset(spec), batch_size, seed + rank, start_batch, workers, collate_samples)

    def __next__(self) -> dict:
        return next(self._iter)


def shuffled_batches(dataset, batch_size: int, seed: int, start_batch: int = 0, workers: int = 0,
                     collate_fn=None) -> Iterator:
    """Endless batches of a map-style dataset, items drawn with replacement by a generator seeded
    with ``seed`` (read and collated by ``workers`` DataLoader processes), positioned at batch
    ``start_batch``: a resumed run sees the batches an uninterrupted one would."""
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=10 ** 9,
                                             generator=torch.Generator().manual_seed(seed))
    batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last=True)

    class FromStart:  # the same order after a resume: the batches before the checkpoint are skipped
        def __iter__(self):
            it = iter(batches)
            for _ in range(start_batch):
                next(it)
            return it

    # the loader's own generator: starting it must not draw from torch's global RNG (resume)
    return iter(DataLoader(dataset, batch_sampler=FromStart(), num_workers=workers, collate_fn=collate_fn,
                           pin_memory=workers > 0 and torch.cuda.is_available(),
                           generator=torch.Generator().manual_seed(seed)))
