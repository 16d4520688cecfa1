"""Label-preserving transforms of training batches (`data.augment`).

Applied in the training step, after the step's random stream is seeded, so a resumed run draws the
same transforms as an unbroken one. Each picks a random half of the batch (Bernoulli(1/2) per
sequence) and leaves the other sequences as they are:

* `reverse_complement` (DNA): the real tokens between [BOS] and [EOS] are reversed and each
  nucleotide replaced by its complement (A<->T, C<->G); the species does not change;
* `hflip` (images): the image is mirrored left to right (tokens in C, H, W order).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .registry import get_spec
from .tokenizers import DNATokenizer

Augment = Callable[[dict], dict]


def _chosen(ids: torch.Tensor) -> torch.Tensor:
    return torch.rand(ids.shape[0], device=ids.device) < 0.5


def reverse_complement(complement: list[int]) -> Augment:
    """`complement`: token id -> its complement's id (DNATokenizer.complement_ids)."""
    table = torch.tensor(complement)

    def apply(batch: dict) -> dict:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        n = mask.sum(-1, keepdim=True)  # real tokens: [BOS] body [EOS]
        j = torch.arange(ids.shape[1], device=ids.device)[None, :]
        body = (j >= 1) & (j <= n - 2)
        source = torch.where(body, n - 1 - j, j)
        flipped = table.to(ids.device)[ids.gather(1, source)].where(body, ids)
        return {**batch, "input_ids": torch.where(_chosen(ids)[:, None], flipped, ids)}

    return apply


def hflip(image_shape: tuple[int, int, int]) -> Augment:
    def apply(batch: dict) -> dict:
        ids = batch["input_ids"]
        flipped = ids.view(ids.shape[0], *image_shape).flip(-1).reshape(ids.shape)
        return {**batch, "input_ids": torch.where(_chosen(ids)[:, None], flipped, ids)}

    return apply


def build_augment(data_cfg) -> Optional[Augment]:
    """The transform named by `data.augment` for this dataset, or None."""
    name = data_cfg.get("augment")
    if name is None:
        return None
    if name == "reverse_complement":
        return reverse_complement(DNATokenizer().complement_ids())
    if name == "hflip":
        return hflip(get_spec(data_cfg.name).image_shape)
    raise ValueError(f"unknown data.augment '{name}'; allowed: reverse_complement, hflip")
