"""Endless training batches of images (with their scenes or reference captions) for the runners."""

from __future__ import annotations

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

        dataset = open_dataset(spec)
        sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=10 ** 9,
                                                 generator=torch.Generator().manual_seed(seed + rank))
        batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last=True)

        class FromStart:  # the same order after a resume: the batches before the checkpoint are skipped
            def __iter__(self):
                it = iter(batches)
                for _ in range(start_batch):
                    next(it)
                return it

        self._iter = iter(DataLoader(dataset, batch_sampler=FromStart(), num_workers=workers, collate_fn=collate_samples,
                                     pin_memory=workers > 0 and torch.cuda.is_available()))

    def __next__(self) -> dict:
        return next(self._iter)
