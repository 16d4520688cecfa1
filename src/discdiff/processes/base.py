"""The interface every forward noising process implements.

A process owns the math of one corruption kernel q(x_t | x0) = Cat(alpha_t x0 + (1 - alpha_t) pi):
sampling x_t, the prior at t = 1, the posterior q(x_s | x_t, x0) used by the reverse process, the
parameterisation of the denoiser's prediction, and the continuous-time NELBO integrand. Code
outside the process classes never branches on which process it holds.

Shapes: token ids are LongTensor (B, L); probabilities and logits are (B, L, V) with V the full
vocabulary (the absorbing process's mask token included); alpha tensors broadcast as (B, 1, 1) or
(B, L, 1) (any shape that broadcasts against (B, L, 1) works, including (B,) and (B, 1)).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


def as_alpha(alpha: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Return alpha as a tensor that broadcasts against (B, L, 1), on the device of `like`."""
    alpha = torch.as_tensor(alpha, device=like.device)
    if alpha.dim() == 1:  # (B,) per-sequence times
        alpha = alpha[:, None, None]
    elif alpha.dim() == 2:  # (B, 1) or (B, L)
        alpha = alpha[..., None]
    return alpha


def as_probs(x0: torch.Tensor, vocab_size: int, dtype: torch.dtype) -> torch.Tensor:
    """Token ids (B, L) become one-hot (B, L, V); probabilities (B, L, V) pass through."""
    if x0.dtype in (torch.int64, torch.int32):
        return torch.nn.functional.one_hot(x0, vocab_size).to(dtype)
    return x0.to(dtype)


def sample_categorical(log_probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel-max sample from unnormalised log-probabilities (..., V) -> ids (...).

    The noise is drawn in float32, or float64 for float64 input: low-precision Gumbel noise
    truncates the tails and lowers sample diversity."""
    return gumbel_argmax(log_probs, uniform_noise(log_probs.shape, log_probs.device, log_probs.dtype, generator))


def uniform_noise(shape, device, dtype: torch.dtype, generator: torch.Generator | None = None) -> torch.Tensor:
    """The uniforms (..., V) that `gumbel_argmax` turns into one draw per row of log-probabilities
    of that shape and dtype: float32, or float64 for float64 ones."""
    dtype = torch.promote_types(dtype, torch.float32)  # float64 stays float64
    return torch.rand(shape, device=device, dtype=dtype, generator=generator)


def cross_entropy_(x: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(-log softmax(x)[target] (n,), scale (softmax(x) - onehot(targets)) (n, V)) of fp32 rows x
    (n, V), the gradient of scale * cross-entropy written over x: no second (n, V) buffer (a
    library log-sum-exp would allocate one for x - max)."""
    picked = x.gather(-1, targets[:, None]).squeeze(-1)
    top = x.amax(dim=-1)
    total = x.sub_(top[:, None]).exp_().sum(dim=-1)
    nll = top + total.log() - picked
    g = x.div_(total[:, None])
    g[torch.arange(len(targets), device=g.device), targets] -= 1
    return nll, g.mul_(scale[:, None].to(g.dtype))


def nucleus(log_probs: torch.Tensor, top_p: float, first_k: int = 512) -> torch.Tensor:
    """Nucleus (top-p) filtering of normalised log-probabilities (..., V): each row keeps its
    smallest set of most likely tokens whose probability reaches top_p (ties broken by the order of
    a top-k), renormalised; the others become -inf. top_p >= 1 returns the input unchanged. Rows
    whose nucleus lies within their `first_k` most likely tokens are found with a top-k (several
    times cheaper than sorting 30,000 word pieces); the others by buckets of log-probability
    (`_nucleus_by_buckets`), which orders only the tokens of one bucket instead of the whole row."""
    if top_p >= 1:
        return log_probs
    rows = log_probs.reshape(-1, log_probs.shape[-1])
    keep = _nucleus_rows(rows, top_p, min(first_k, rows.shape[-1]))
    wide = ~keep.any(dim=-1)  # the top k did not reach top_p
    if wide.any():
        keep[wide] = _nucleus_by_buckets(rows[wide], top_p)
    return rows.masked_fill(~keep, float("-inf")).log_softmax(dim=-1).view_as(log_probs)


def _nucleus_rows(rows: torch.Tensor, top_p: float, k: int) -> torch.Tensor:
    """(n, V) bool: each row's nucleus among its k most likely tokens; all False where those k
    tokens hold less than top_p."""
    ordered, order = rows.topk(k, dim=-1)
    probs = ordered.exp()
    total = probs.cumsum(dim=-1)
    inside = (total - probs < top_p) & (total[:, -1:] >= top_p)  # the mass before a kept token is below p
    return torch.zeros_like(rows, dtype=torch.bool).scatter_(-1, order, inside)


def _nucleus_by_buckets(rows: torch.Tensor, top_p: float, buckets: int = 1024, span: float = 20.0) -> torch.Tensor:
    """(n, V) bool: each row's nucleus, without sorting the row. Log-probabilities are put into
    `buckets` buckets of equal width from the row's maximum down to maximum - span (the last bucket
    also takes everything below); the mass per bucket, summed from the top, gives the bucket where
    it reaches top_p. Tokens of the buckets above are in; the tokens of that bucket alone are
    gathered and sorted, and taken while the mass before them is below top_p."""
    n = rows.shape[0]
    top = rows.max(dim=-1, keepdim=True).values
    index = (top - rows).mul_(buckets / span).clamp_(max=buckets - 1).long()  # 0: the highest bucket
    mass = torch.zeros(n, buckets, dtype=rows.dtype, device=rows.device).scatter_add_(1, index, rows.exp())
    through = mass.double().cumsum(dim=-1)
    crossing = (through < top_p).sum(dim=-1, keepdim=True).clamp_(max=buckets - 1)  # (n, 1)
    above = through.gather(-1, crossing) - mass.gather(-1, crossing).double()
    inside = index == crossing
    row, col = inside.nonzero(as_tuple=True)  # row-major: each row's tokens in a run
    counts = inside.sum(dim=-1)
    slot = torch.arange(len(row), device=rows.device) - (counts.cumsum(0) - counts)[row]
    values = torch.full((n, int(counts.max())), float("-inf"), dtype=rows.dtype, device=rows.device)
    values[row, slot] = rows[row, col]
    ordered, order = values.sort(dim=-1, descending=True)
    probs = ordered.double().exp()
    take = (above + probs.cumsum(dim=-1) - probs < top_p) & torch.isfinite(ordered)
    chosen = torch.zeros_like(take).scatter_(-1, order, take)[row, slot]  # back to the gathered order
    keep = index < crossing
    keep.view(-1)[(row * rows.shape[1] + col)[chosen]] = True
    return keep


def gumbel_argmax(log_probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """argmax(log_probs + Gumbel noise) (...) with the noise -log(-log u) of given uniforms (..., V):
    a draw from softmax(log_probs). A pure function of its inputs, so it can be compiled."""
    exponential = -torch.log(uniform.clamp_min(1e-30))  # > 0
    return (log_probs.to(uniform.dtype) - torch.log(exponential.clamp_min(1e-30))).argmax(dim=-1)


def temper(log_p: torch.Tensor, log_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma log p + (1 - gamma) log q (the D-CFG tempering, paper Sec. 3.1), with -inf wherever
    either is -inf (both distributions share the process's support, so this never drops a token
    that both allow)."""
    impossible = torch.isinf(log_p) | torch.isinf(log_q)
    mixed = gamma * log_p.masked_fill(impossible, 0) + (1 - gamma) * log_q.masked_fill(impossible, 0)
    return mixed.masked_fill(impossible, float("-inf"))


def redraw(xt: torch.Tensor, where: torch.Tensor, rows: torch.Tensor,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t (B, L) with the n positions `where` (B, L) drawn anew from `rows` (n, V), their
    (unnormalised) log-probabilities in the order of `where.nonzero()`."""
    xs = xt.clone()
    xs[where] = sample_categorical(rows, generator)
    return xs


def bernoulli(prob: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean tensor, True with the given elementwise probability."""
    return torch.rand(prob.shape, device=prob.device, dtype=prob.dtype, generator=generator) < prob


class DiscreteProcess(ABC):
    """A forward process on sequences of tokens from a vocabulary of size V.

    `uses_mask`: whether the process has a mask state (the tokenizer's mask_id); a process without
    one leaves a tokenizer's extra mask token out of the model's vocabulary (`lm.model_vocab_size`)."""

    vocab_size: int
    uses_mask: bool = False
    #: the process's pure reductions over (..., V) logits that `compile_sampling` compiles
    compilable: tuple[str, ...] = ()
    #: those of them that read a varying number of rows (the redrawn positions): compiled with
    #: dynamic shapes
    compilable_rows: tuple[str, ...] = ()
    sampling_compiled: bool = False

    def compile_sampling(self, backend: str = "inductor") -> None:
        """torch.compile the per-position reductions of the guided steps (`compilable`: functions
        of the logits and of uniforms drawn outside, without randomness of their own), so that
        each reads the (2, B, L, V) logits once or twice instead of writing fp32 intermediates of
        that size; one compilation per shape and gamma (`compilable_rows`: one per gamma, any
        number of rows). The compiled step draws what the eager one draws from the same random
        numbers, up to float rounding. Calling it again does nothing."""
        if self.sampling_compiled:
            return
        for name in self.compilable:
            dynamic = name in self.compilable_rows
            setattr(self, name, torch.compile(getattr(self, name), dynamic=dynamic, backend=backend))
        self.sampling_compiled = True

    @abstractmethod
    def sample_xt(self, x0: torch.Tensor, alpha, generator=None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x0) per position. x0 (B, L) ids -> (B, L) ids."""

    @abstractmethod
    def sample_prior(self, shape, device=None, generator=None) -> torch.Tensor:
        """Draw x_1 from the prior pi (B, L)."""

    @abstractmethod
    def posterior(self, x0, xt, alpha_s, alpha_t) -> torch.Tensor:
        """q(x_s | x_t, x0) as probabilities (B, L, V), s < t.

        x0 is ids (B, L) or probabilities (B, L, V). With probabilities x the prediction enters
        q(x_s | x0) linearly (D3PM): q(x_s | x_t, x) is proportional to
        q(x_t | x_s) * sum_v x(v) q(x_s | x0 = v).
        """

    @abstractmethod
    def predict_x0(self, logits: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        """Turn network logits (B, L, V) into log-probabilities of x0 (the parameterisation)."""

    @abstractmethod
    def nelbo_integrand(self, log_x_theta, x0, xt, alpha, dalpha) -> torch.Tensor:
        """Continuous-time NELBO integrand per position (B, L) for one x_t.

        The diffusion part of the NELBO is the integral over t in [0, 1] of
        E_{x_t ~ q(x_t | x0)}[sum_l integrand].
        """

    def training_terms(self, logits, x0, xt, alpha, dalpha) -> tuple[torch.Tensor, torch.Tensor]:
        """(NELBO integrand, log x_theta(x0)), each (B, L), straight from the network's logits
        (B, L, V): what training reads. This default goes through `predict_x0`; a process whose
        integrand needs one entry per row overrides it to skip the (B, L, V) log-probabilities."""
        log_x_theta = self.predict_x0(logits, xt)
        log_lik = log_x_theta.gather(-1, x0[..., None]).squeeze(-1)
        return self.nelbo_integrand(log_x_theta, x0, xt, alpha, dalpha), log_lik

    def training_gradient(self):
        """`training_terms` of flat rows with their gradient in closed form (a
        `models.fused_head.GradientFunction`: (logits (n, V), weights (n, 2), x0, xt, alpha, dalpha
        (n,)) -> (terms (n, 2), d loss / d logits (n, V))), or None (this default): the fused head
        then differentiates `training_terms` by autograd."""
        return None

    def rows_reading_logits(self, xt: torch.Tensor) -> torch.Tensor | None:
        """Positions (B, L) whose training terms (NELBO integrand, log x_theta(x0), D3PM KL,
        reconstruction) depend on the network's output; the others are exactly 0 and may skip the
        head. None: every position (this default)."""
        return None

    @abstractmethod
    def prior_kl(self, x0: torch.Tensor, alpha_1) -> torch.Tensor:
        """KL(q(x_1 | x0) || pi) per position (B, L)."""

    @abstractmethod
    def reverse_step(self, log_x_theta, xt, alpha_s, alpha_t, generator=None) -> torch.Tensor:
        """Draw x_s ~ q(x_s | x_t, x_theta) without materialising the (B, L, V) posterior.

        Exactly equivalent in distribution to sampling `posterior(exp(log_x_theta), ...)`, but
        only the positions that change read a full row of the prediction.
        """

    def sample_tempered(self, logits: torch.Tensor, gamma: float, xt, alpha_s, alpha_t, generator=None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw x_s (B, L) from the normalised q(x_s | x_t, x_p)^gamma q(x_s | x_t, x_q)^(1 - gamma),
        the D-CFG step (paper Sec. 3.1). logits (2, B, L, V): the network's raw logits for the two
        labels (p: the target class, q: the null class), of which `predict_x0` makes x_p and x_q.
        This generic version builds both posteriors; processes override it with an exact sampler
        that never materialises them."""
        log_p, log_q = (self.log_posterior(self.predict_x0(x, xt).to(dtype), xt, alpha_s, alpha_t) for x in logits)
        return sample_categorical(temper(log_p, log_q, gamma), generator)

    def decoded(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: the positions of x holding a data token rather than an absorbing state (the
        ones a remasking corrector may put back). This default: every position."""
        return torch.ones_like(x, dtype=torch.bool)

    def clean_jump_sigma(self, sigma_t: torch.Tensor) -> torch.Tensor:
        """The noise level (B,) at which a noisy classifier scores x_t with one token set to a clean
        value when the step jumps to clean data (a corrector's step to alpha = 1; D-CBG scores an
        ordinary step's candidates at the level of x_s). This default: 0, the level of the target."""
        return torch.zeros_like(sigma_t)

    @abstractmethod
    def log_marginal(self, log_x0: torch.Tensor, alpha) -> torch.Tensor:
        """log q(x_t | x0 ~ p) = log(alpha p + (1 - alpha) pi) (B, L, V) for a distribution p of x0
        given as log-probabilities (B, L, V): the forward noise applied to a prediction."""

    def log_posterior(self, log_x_theta, xt, alpha_s, alpha_t) -> torch.Tensor:
        """log q(x_s | x_t, x_theta) (B, L, V) for a predicted distribution over x0."""
        return torch.log(self.posterior(log_x_theta.exp(), xt, alpha_s, alpha_t))
