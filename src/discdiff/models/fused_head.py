"""The output head and a loss's per-position terms in one pass over chunks of rows.

Every objective of discdiff is a sum over positions of terms that read one position's row of
logits and nothing else: the NELBO integrands (MDLM Eq. 10, UDLM Eq. 18), the D3PM KL, the
reconstruction term, the AR cross-entropy. Built in full, the logits and the fp32 intermediates of
those terms are (B, L, V) tensors: 2 x 10^9 elements each at batch 512, L = 128, V = 30,522.
Here the rows (positions) go through the head's linear map and the term function in chunks; a
chunk's logits exist only while its terms and gradient contributions are formed.

The gradient is formed in the forward pass. The loss is linear in the terms,
    loss = sum_r sum_k w_rk term_rk,      w = d loss / d term   (given before the pass),
so a chunk's g = d loss / d logits (n, V) (autograd through the term function of that chunk alone)
contributes at once to dL/dh = g W (n, D), dL/dW += g^T h (V, D) and dL/db += sum_r g_r; the backward
only scales these by the incoming gradient of the loss. No logits are stored and none are
recomputed: the head costs the three matrix products of the plain path. Chunks run in a fixed
order, so the result is deterministic.

`RowTerms` describes the terms; `RowTerms.of_features` runs them through a head chunk by chunk and
`RowTerms.of_logits` on logits already built (the unchunked reference, and any denoiser that only
returns logits).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch
import torch.nn.functional as F

#: (logits (1, n, V), *inputs (1, n)) -> k tensors (1, n): the terms of n rows
TermFunction = Callable[..., tuple[torch.Tensor, ...]]
#: (logits (n, V), weights (n, k), *inputs (n,)) -> (terms (n, k), d loss / d logits (n, V)): the
#: terms and their gradient in closed form; it may overwrite the logits (a chunk's own buffer)
GradientFunction = Callable[..., tuple[torch.Tensor, torch.Tensor]]

#: head_chunk_mib=None: the budget of one chunk's fp32 (rows, V) logits, by device type. On a GPU
#: larger chunks keep the kernels few per step; on the CPU small ones stay in cache.
DEFAULT_CHUNK_MIB = {"cuda": 256.0, "cpu": 16.0}


@dataclass(frozen=True)
class RowTerms:
    """Per-position terms of a loss, computed from the logits row by row.

    fn: the term function, called on a batch of one sequence of n rows: logits (1, n, V) and each
        of `inputs` at those rows (1, n); returns k tensors (1, n). It must treat rows
        independently (no reduction across rows).
    inputs: tensors (B, L) aligned with the positions (targets, x_t, alpha per position, ...).
    weights: (B, L, k) = d loss / d term, or None when no gradient is wanted (evaluation).
    rows: bool (B, L), the positions whose terms read the logits; the others are 0 and never go
        through the head (MDLM: the unmasked positions). None: all positions.
    chunk_mib: MiB of one chunk's fp32 (rows, V) logits; 0 runs all rows at once (the reference
        path); None takes `DEFAULT_CHUNK_MIB` of the device.
    gradient: the terms with their gradient in closed form (`GradientFunction`), which the chunks
        use in place of autograd through `fn` (fewer chunk-sized buffers); None: autograd.
    """

    fn: TermFunction
    inputs: tuple[torch.Tensor, ...]
    weights: Optional[torch.Tensor] = None
    rows: Optional[torch.Tensor] = None
    chunk_mib: Optional[float] = None
    gradient: Optional[GradientFunction] = None

    def with_chunk_mib(self, chunk_mib: Optional[float]) -> "RowTerms":
        return replace(self, chunk_mib=chunk_mib)

    def of_logits(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, terms (B, L, k)) from full logits (B, L, V), by ordinary autograd: loss =
        sum(weights * terms) carries the gradient (a zero scalar without weights), the terms are
        detached."""
        batch = logits.shape[:2]
        h, inputs, weights = self._select(logits)
        values = _call(self.fn, h, inputs)
        loss = _weighted_sum(values, weights, logits)
        return loss, self._scatter(values.detach(), batch)

    def of_features(self, features: torch.Tensor, linear: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, terms (B, L, k)) from the head's input features (B, L, D) and its final linear
        map (D -> V), chunk by chunk (module docstring)."""
        batch = features.shape[:2]
        h, inputs, weights = self._select(features)
        rows = self.rows_per_chunk(linear.out_features, features.device)
        if rows >= h.shape[0]:
            values = _call(self.fn, linear(h), inputs)
            loss = _weighted_sum(values, weights, features)
            return loss, self._scatter(values.detach(), batch)
        wants_grad = torch.is_grad_enabled() and weights is not None and (
            h.requires_grad or linear.weight.requires_grad)
        if wants_grad:
            loss, values = _ChunkedHeadLoss.apply(h, linear.weight, linear.bias, weights, self.fn, self.gradient,
                                                  rows, *inputs)
        else:
            with torch.no_grad():
                values = torch.cat([_call(self.fn, linear(h[s:s + rows]), [x[s:s + rows] for x in inputs])
                                    for s in range(0, h.shape[0], rows)])
            loss = _weighted_sum(values, weights, features)
        return loss, self._scatter(values, batch)

    def rows_per_chunk(self, vocab_size: int, device: torch.device) -> int:
        """Rows whose fp32 logits fit the chunk budget (at least one); unbounded for budget 0."""
        budget = DEFAULT_CHUNK_MIB.get(device.type, DEFAULT_CHUNK_MIB["cuda"]) if self.chunk_mib is None \
            else self.chunk_mib
        if budget <= 0:
            return torch.iinfo(torch.int64).max
        return max(1, int(budget * 2**20) // (4 * vocab_size))

    def _select(self, per_position: torch.Tensor):
        """The selected rows of (B, L, ...) tensors: per_position (N, ...), inputs (N,), weights (N, k)."""
        if self.rows is None:
            pick = lambda x: x.reshape(-1, *x.shape[2:])
        else:
            pick = lambda x: x[self.rows]
        inputs = [pick(x.expand(per_position.shape[:2])) for x in self.inputs]
        return pick(per_position), inputs, None if self.weights is None else pick(self.weights)

    def _scatter(self, values: torch.Tensor, batch) -> torch.Tensor:
        """Terms of the selected rows (N, k) back at their positions (B, L, k), 0 elsewhere."""
        if self.rows is None:
            return values.reshape(*batch, -1)
        out = values.new_zeros(*batch, values.shape[-1])
        out[self.rows] = values
        return out


def _call(fn: TermFunction, logits: torch.Tensor, inputs) -> torch.Tensor:
    """fn over rows: logits (n, V), inputs (n,) -> terms (n, k), computed as one sequence of n rows."""
    return torch.stack([t[0] for t in fn(logits[None], *(x[None] for x in inputs))], dim=-1)


def _weighted_sum(values: torch.Tensor, weights: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return like.new_zeros((), dtype=torch.float32)
    return (values * weights.to(values.dtype)).sum()


class _ChunkedHeadLoss(torch.autograd.Function):
    """loss = sum(weights * fn(h W^T + b)) over rows in chunks, its gradient formed in the forward
    pass (module docstring). Inputs: h (N, D), weight (V, D), bias (V,) or None, weights (N, k), fn,
    its closed-form gradient or None, rows per chunk, then fn's per-row inputs (N,). Outputs: the loss () and the terms (N, k)
    (not differentiable)."""

    @staticmethod
    def forward(ctx, h, weight, bias, weights, fn, gradient, rows, *inputs):
        grad_h = torch.empty_like(h)
        acc = torch.promote_types(weight.dtype, torch.float32)  # bf16 parameters accumulate in fp32
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=acc)
        grad_b = None if bias is None else torch.zeros(bias.shape, device=bias.device, dtype=acc)
        values = []
        for s in range(0, h.shape[0], rows):
            h_c, w_c, inputs_c = h[s:s + rows].detach(), weights[s:s + rows], [x[s:s + rows] for x in inputs]
            logits = F.linear(h_c, weight.detach(), None if bias is None else bias.detach())
            dtype = logits.dtype
            if gradient is not None:
                terms, g = gradient(logits, w_c, *inputs_c)
            else:
                with torch.enable_grad():
                    logits.requires_grad_()
                    terms = _call(fn, logits, inputs_c)
                    (g,) = torch.autograd.grad(terms, logits, w_c.to(terms.dtype))
            values.append(terms.detach())
            g = g.to(dtype)  # what autograd of the plain path hands the head's matmuls
            grad_h[s:s + rows] = (g @ weight.to(g.dtype)).to(h.dtype)
            if g.dtype == grad_w.dtype:  # accumulate in place: no (V, D) temporary per chunk
                grad_w.addmm_(g.t(), h_c.to(g.dtype))
            else:  # bf16 rows under autocast: a bf16 (V, D) product, added in fp32
                grad_w += g.t() @ h_c.to(g.dtype)
            if grad_b is not None:
                grad_b += g.sum(0)
        values = torch.cat(values)
        # kept as attributes, not saved tensors, so that backward hands them over as the only
        # reference and autograd moves them into .grad instead of copying a (V, D) tensor
        ctx.grads = [grad_h, grad_w, grad_b]
        ctx.param_dtypes = (weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(values)
        return (values * weights.to(values.dtype)).sum(), values

    @staticmethod
    def backward(ctx, grad_loss, _grad_values):
        """Scales the gradients formed in the forward pass by the loss's incoming gradient, in
        place (no second (V, D) buffer), and hands them over; a second backward through the same
        graph is refused."""
        if ctx.grads is None:
            raise RuntimeError("the fused head's loss was backpropagated twice; retain_graph is not supported here")
        grads, ctx.grads = ctx.grads, None
        w_dtype, b_dtype = ctx.param_dtypes
        grads = [g if g is None else g.mul_(grad_loss.to(g.dtype)) for g in grads]
        grads[1] = grads[1].to(w_dtype)
        grads[2] = None if grads[2] is None else grads[2].to(b_dtype)
        no_grads = (None,) * (len(ctx.needs_input_grad) - 3)  # weights, fn, gradient, rows, fn's inputs
        return (*grads, *no_grads)
