"""FUDGE for autoregressive models (Yang & Klein 2021): future discriminators for generation.

The next-token distribution is restricted to its `topk` most likely tokens and reweighted by a
prefix classifier that predicts the attribute of the finished sequence from a prefix:

    p_gamma(x_i = v | x_<i, y)  proportional to  p(x_i = v | x_<i)  p(y | x_<i, v)^gamma,  v in top-k.

gamma = 0 is top-k sampling (identical to the model with topk >= V). The classifier scores the k
extended prefixes of every row, in memory-bounded chunks.
"""

from __future__ import annotations

import torch

from .base import AUTOREGRESSIVE, Classifier, Guidance, TokenStep, normalize


class FUDGE(Guidance):
    """`classifier(prefix (B', i), sigma=None) -> log p(y | prefix)` (B', C), e.g. a classifier trained
    with classifier.kind=prefix; `condition`: the target class."""

    families = (AUTOREGRESSIVE,)

    def __init__(self, classifier: Classifier, gamma: float, condition: int, *, topk: int = 50,
                 max_candidates: int = 16_384):
        if topk < 1:
            raise ValueError(f"guidance.topk must be >= 1, got {topk}")
        self.classifier, self.gamma, self.condition = classifier, float(gamma), int(condition)
        self.topk, self.max_candidates = topk, max_candidates

    def log_probs(self, step: TokenStep) -> torch.Tensor:
        log_p = step.log_probs()  # (B, V)
        top, tokens = log_p.topk(min(self.topk, log_p.shape[-1]), dim=-1)  # (B, k)
        if self.gamma != 0:
            top = top + self.gamma * self.scores(step.prefix, tokens)
        return normalize(torch.full_like(log_p, float("-inf")).scatter(-1, tokens, top))

    @torch.no_grad()
    def scores(self, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """log p(y | prefix, v) (B, k) for the candidate next tokens `tokens` (B, k). A classifier with
        `continuation_log_probs(prefix, tokens) -> (B, k, C)` (discdiff's prefix classifier: the
        prefix runs once) is asked for all k at once; any other callable scores the k sequences."""
        continuation = getattr(self.classifier, "continuation_log_probs", None)
        if continuation is not None:
            return continuation(prefix, tokens)[..., self.condition].float()
        b, k = tokens.shape
        candidates = torch.cat([prefix.repeat_interleave(k, 0), tokens.reshape(-1, 1)], dim=1)  # (B k, i + 1)
        rows = max(1, self.max_candidates)
        scores = [self.classifier(chunk, None)[:, self.condition].float() for chunk in candidates.split(rows)]
        return torch.cat(scores).view(b, k)
