"""D-CBG: classifier-based guidance for discrete diffusion (paper Sec. 3.2).

The step distribution is reweighted by a noisy classifier evaluated on the candidate x_s:
    p_gamma(x_s^l = v | x_t, y)  proportional to  p(x_s^l = v | x_t)  p(y | x_t with token l set to v)^gamma.
Candidates differ from x_t in one token (exact when at most one token changes per step, so it
becomes exact as the number of steps grows). The classifier is time-conditioned and scores them at
the noise level of x_s. Exact guidance scores every one-token change (L x V candidates per
sequence, in memory-bounded chunks, only at positions whose posterior is not already fixed: an
absorbing model's unmasked tokens never change); the first-order variant replaces the scores by
the Taylor expansion  log p(y | x_t) + grad . (e_v - e_{x_t^l})  of the classifier in its one-hot input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Classifier, Guidance, Step, normalize


class CBG(Guidance):
    """`classifier(x, sigma) -> log p(y | x)` (B, C); `condition`: the target class."""

    def __init__(self, classifier: Classifier, gamma: float, condition: int, *, first_order: bool = False,
                 max_candidates: int = 65_536):
        self.classifier, self.gamma, self.condition = classifier, float(gamma), int(condition)
        self.first_order, self.max_candidates = first_order, max_candidates

    def log_probs(self, step: Step) -> torch.Tensor:
        log_p = step.log_posterior(step.predict(cond=step.cond))
        if self.gamma == 0:
            return log_p
        movable = torch.isfinite(log_p).sum(-1) > 1  # (B, L): positions whose token may change
        scores = (self.taylor_scores if self.first_order else self.exact_scores)(step, movable)
        guided = log_p + self.gamma * scores.to(log_p.dtype)
        return normalize(torch.where(movable[..., None], guided, log_p))

    def exact_scores(self, step: Step, movable: torch.Tensor) -> torch.Tensor:
        """log p(y | x_t with token l set to v) (B, L, V) at every movable (b, l); 0 elsewhere."""
        b, length = step.xt.shape
        v = step.process.vocab_size
        scores = torch.zeros(b, length, v, device=step.xt.device)
        rows, cols = movable.nonzero(as_tuple=True)  # one candidate block of V sequences per (b, l)
        per_chunk = max(1, self.max_candidates // v)
        vocab = torch.arange(v, device=step.xt.device)
        for start in range(0, rows.numel(), per_chunk):
            r, c = rows[start:start + per_chunk], cols[start:start + per_chunk]
            candidates = step.xt[r].repeat_interleave(v, 0)  # (n V, L)
            candidates[torch.arange(candidates.shape[0]), c.repeat_interleave(v)] = vocab.repeat(r.numel())
            with torch.no_grad():
                log_py = self.classifier(candidates, step.sigma_s[r].repeat_interleave(v))
            scores[r, c] = log_py[:, self.condition].float().view(-1, v)
        return scores

    def taylor_scores(self, step: Step, movable: torch.Tensor) -> torch.Tensor:
        """First-order scores grad_{x}(log p(y | x))[l, v] - grad[l, x_t^l] at x = onehot(x_t)."""
        onehot = F.one_hot(step.xt, step.process.vocab_size).float().requires_grad_(True)
        with torch.enable_grad():
            log_py = self.classifier(onehot, step.sigma_s)[:, self.condition]
            (grad,) = torch.autograd.grad(log_py.sum(), onehot)
        return grad - grad.gather(-1, step.xt[..., None])
