"""Guidance strategies reshape the distribution of one sampling step.

At every step the sampler hands a strategy a step object and draws from the log-probabilities
the strategy returns:

- `Step` (diffusion, MDLM / UDLM): x_t (B, L), the times t > s and their alphas, and the
  denoiser. Unguided sampling is the posterior q(x_s | x_t, x_theta(x_t)) (paper Eq. 3 / 6);
  strategies return (B, L, V).
- `TokenStep` (autoregressive): the prefix (B, i) and the causal model. Unguided sampling is the
  next-token distribution p(x_i | x_<i); strategies return (B, V).

Both expose `log_probs_for(labels)`: the unguided distribution for every row of a stack of k
label batches (kB,), computed in one batched forward pass. A strategy written against it alone
(D-CFG) serves both families; the others declare the families they apply to in `families`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional

import torch

from ..objectives import Denoiser
from ..processes import DiscreteProcess, sample_categorical
from ..processes.base import nucleus

# classifier(x, sigma) -> log p(y | x) (B, num_classes); x is ids (B, L) or one-hot / relaxed (B, L, V)
Classifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DIFFUSION, AUTOREGRESSIVE = "diffusion", "autoregressive"


def _stacked(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, ...) repeated k times along the batch: (kB, ...)."""
    return x if k == 1 else x.repeat(k, *([1] * (x.dim() - 1)))


def _key(labels: Optional[torch.Tensor]):
    """A hashable key of a batch of labels (None: unconditional)."""
    return None if labels is None else tuple(labels.reshape(-1).tolist())


def _batch_multiple(labels: torch.Tensor, batch_size: int) -> int:
    k, rest = divmod(labels.shape[0], batch_size)
    if rest or k < 1:
        raise ValueError(f"labels for {labels.shape[0]} rows do not stack batches of {batch_size}")
    return k


@dataclass
class Step:
    """One reverse diffusion step from time t to s < t for a batch x_t (B, L).

    alpha_t, alpha_s, sigma_t, sigma_s are (B,); sigma_s is the noise level of x_s, at which a
    noisy classifier scores candidates. `nfe` counts denoiser calls made through `predict`.
    top_p: the nucleus every prediction x_theta is restricted to (`processes.base.nucleus`).
    shared: the predictions at this x_t, by labels; steps of one x_t to different levels (a
    corrected step's two targets, `dataclasses.replace` of one another) share it, so the network
    runs once for both (`memo`).
    """

    family: ClassVar[str] = DIFFUSION
    process: DiscreteProcess
    denoiser: Denoiser
    xt: torch.Tensor
    alpha_t: torch.Tensor
    alpha_s: torch.Tensor
    sigma_t: torch.Tensor
    sigma_s: torch.Tensor
    cond: Optional[torch.Tensor] = None
    dtype: torch.dtype = torch.float32
    nfe: int = field(default=0)
    top_p: float = 1.0
    shared: dict = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.xt.shape[0]

    @property
    def device(self) -> torch.device:
        return self.xt.device

    def memo(self, key, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """`compute()` once per key among the steps that share `shared` (same x_t)."""
        if key not in self.shared:
            self.shared[key] = compute()
        return self.shared[key]

    def x0(self, logits: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        """log x_theta (B', L, V) of the network's logits at x_t: the process parameterisation,
        then the nucleus."""
        return nucleus(self.process.predict_x0(logits, xt), self.top_p).to(self.dtype)

    def predict(self, xt: Optional[torch.Tensor] = None, cond=None, sigma=None) -> torch.Tensor:
        """log x_theta (B', L, V) for x_t (default: this step's, memoised) with labels `cond`."""
        if xt is None and sigma is None:
            return self.memo(("x0", _key(cond)), lambda: self._predict(self.xt, cond, self.sigma_t))
        return self._predict(self.xt if xt is None else xt, cond, self.sigma_t if sigma is None else sigma)

    def _predict(self, xt, cond, sigma) -> torch.Tensor:
        self.nfe += 1
        return self.x0(self.denoiser(xt, sigma, cond), xt)

    def logits_for(self, labels: torch.Tensor) -> torch.Tensor:
        """The denoiser's logits (k, B, L, V) of x_t for a stack of k label batches (kB,), one pass
        (memoised). With top_p < 1 they are the filtered log x_theta, which the process's
        parameterisation maps to themselves; so is a prediction `log_probs_for` already made for
        these labels, which is returned instead of a second pass."""
        k, key = _batch_multiple(labels, self.xt.shape[0]), _key(labels)
        if ("x0", key) in self.shared:
            return self.shared["x0", key].view(k, *self.xt.shape, -1)

        def compute():
            self.nfe += 1
            xt = _stacked(self.xt, k)
            logits = self.denoiser(xt, _stacked(self.sigma_t, k), labels)
            return (logits if self.top_p >= 1 else self.x0(logits, xt)).view(k, *self.xt.shape, -1)

        return self.memo(("logits", key), compute)

    def log_posterior(self, log_x_theta: torch.Tensor) -> torch.Tensor:
        """log q(x_s | x_t, x_theta) (B, L, V); log_x_theta may stack k batches (kB, L, V)."""
        k = log_x_theta.shape[0] // self.xt.shape[0]
        return self.process.log_posterior(log_x_theta, _stacked(self.xt, k),
                                          _stacked(self.alpha_s, k).to(self.dtype),
                                          _stacked(self.alpha_t, k).to(self.dtype))

    def log_probs_for(self, labels: torch.Tensor) -> torch.Tensor:
        """Unguided log q(x_s | x_t, x_theta(x_t, y)) (kB, L, V) for labels (kB,), one pass; from
        the logits `logits_for` memoised for these labels when it ran first (D-CFG's draw, then a
        corrector's read of the same distribution), without keeping a second copy."""
        k, key = _batch_multiple(labels, self.xt.shape[0]), _key(labels)
        xt = _stacked(self.xt, k)
        if ("logits", key) in self.shared:
            logits = self.shared["logits", key].flatten(0, 1)
            return self.log_posterior(logits if self.top_p < 1 else self.x0(logits, xt))
        return self.log_posterior(self.memo(("x0", key), lambda: self._predict(xt, labels, _stacked(self.sigma_t, k))))


NextTokenModel = Callable[..., torch.Tensor]


@dataclass
class TokenStep:
    """One autoregressive step: draw x_i given the prefix (B, i).

    `next_logits(prefix (kB, i), labels (kB,) or None, key)` -> fp32 logits (kB, V) is the sampler's
    incremental decoder (one KV cache per `key`: each distinct stack of labels keeps its own).
    `hidden` is the same with the prefix's last hidden states: -> (logits (kB, V), hidden (kB, i, D)).
    """

    family: ClassVar[str] = AUTOREGRESSIVE
    prefix: torch.Tensor
    next_logits: NextTokenModel
    hidden_states: Optional[NextTokenModel] = None
    cond: Optional[torch.Tensor] = None
    nfe: int = field(default=0)

    @property
    def batch_size(self) -> int:
        return self.prefix.shape[0]

    @property
    def device(self) -> torch.device:
        return self.prefix.device

    def log_probs_for(self, labels: torch.Tensor) -> torch.Tensor:
        """log p(x_i | x_<i, y) (kB, V) for labels (kB,), one batched pass (cached per label stack)."""
        k = _batch_multiple(labels, self.prefix.shape[0])
        self.nfe += 1
        return self.next_logits(_stacked(self.prefix, k), labels, f"labels{k}").log_softmax(-1)

    def log_probs(self) -> torch.Tensor:
        """The unguided next-token distribution log p(x_i | x_<i, cond) (B, V)."""
        self.nfe += 1
        return self.next_logits(self.prefix, self.cond, "base").log_softmax(-1)

    def hidden(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, V), last hidden states of the prefix (B, i, D)) under `cond`."""
        if self.hidden_states is None:
            raise ValueError("this sampler keeps no hidden states; pass a DiT-like model that returns them")
        self.nfe += 1
        return self.hidden_states(self.prefix, self.cond, "hidden")


class Guidance(ABC):
    """A strategy that returns the (log) distribution of one sampling step.

    `families`: the model families ("diffusion", "autoregressive") it applies to; samplers and
    pipelines refuse any other pairing with `check_family`."""

    families: ClassVar[tuple[str, ...]] = (DIFFUSION,)

    @abstractmethod
    def log_probs(self, step) -> torch.Tensor:
        """Log-probabilities of the next state, normalised over V: (B, L, V) for a diffusion
        `Step`, (B, V) for an autoregressive `TokenStep`."""

    def sample(self, step, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw the next state from `log_probs(step)`: x_s (B, L) or the next token (B,).
        Strategies with a cheaper exact sampler than the full distribution override it."""
        return sample_categorical(self.log_probs(step), generator)

    @classmethod
    def check_family(cls, family: str) -> None:
        if family not in cls.families:
            raise ValueError(f"guidance {cls.__name__} does not apply to {family} models; "
                             f"it applies to: {', '.join(cls.families)}")


def normalize(log_p: torch.Tensor) -> torch.Tensor:
    """Renormalise over V; a row with no finite entry stays all -inf (no NaN)."""
    finite_row = torch.isfinite(log_p).any(-1, keepdim=True)
    safe = torch.where(finite_row, log_p, torch.zeros_like(log_p))
    return torch.where(finite_row, safe.log_softmax(-1), torch.full_like(log_p, float("-inf")))
