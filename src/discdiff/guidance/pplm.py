"""PPLM for autoregressive models (Dathathri et al. 2020): steering through hidden states.

At position i the causal model's last hidden state h_{i-1} (the one its head maps to the
next-token distribution p_delta(x_i)) takes a few gradient steps (`discdiff.guidance.hidden.
perturb_hidden`) towards the target class of a classifier on the model's features, held close to
the unperturbed next-token distribution by a KL term. As in PPLM the classifier scores the
continuation: it reads the mean hidden state of the prefix followed by the expected next token
(the token embeddings averaged under p_delta), so the gradient reaches h_{i-1} through the
distribution it produces. The next token is drawn from p_delta at the perturbed state. The
original perturbs the attention key/value history; this variant perturbs the last layer's
output, which needs no access to the attention internals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import AUTOREGRESSIVE, TokenStep
from .hidden import HiddenStateGuidance


class PPLM(HiddenStateGuidance):
    """`model`: a `HiddenStateModel` on the sampled AR generator (classifier.kind=head) whose
    `hidden` also takes token distributions (B, L, V)."""

    families = (AUTOREGRESSIVE,)
    num_steps, step_size, stability_coef = 3, 0.05, 0.01

    def log_probs(self, step: TokenStep) -> torch.Tensor:
        logits, hidden = step.hidden()  # (B, V), (B, i, D)
        prefix = F.one_hot(step.prefix, logits.shape[-1]).float()  # (B, i, V)
        decode = lambda h: self.model.decode(h, None, step.cond)  # (B, 1, D) -> (B, 1, V)

        def classify(last: torch.Tensor) -> torch.Tensor:
            expected = decode(last).float().softmax(-1)  # (B, 1, V): the next token under the perturbation
            _, states = self.model.hidden(torch.cat([prefix, expected], 1), None, step.cond)
            return self.model.classify(states)

        last = self.perturb(hidden[:, -1:], decode, classify)
        with torch.no_grad():
            return decode(last)[:, -1].float().log_softmax(-1)
