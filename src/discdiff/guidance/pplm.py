"""PPLM for autoregressive models (Dathathri et al. 2020): steering through hidden states.

At position i the causal model's last hidden state h_{i-1} (the one its head maps to the
next-token logits) takes a few gradient steps towards the target class of a classifier that reads
the mean of the prefix's hidden states h_{<i}, held close to the model's next-token distribution by
a KL term (`discdiff.guidance.hidden.perturb_hidden`). The next token is drawn from the head's
distribution at the perturbed state. The original perturbs the attention key/value history; this
variant perturbs the last layer's output, which needs no access to the attention internals.
"""

from __future__ import annotations

import torch

from .base import AUTOREGRESSIVE, Guidance, TokenStep
from .hidden import check_options, perturb_hidden
from .nos import HiddenStateModel


class PPLM(Guidance):
    """`model`: a `HiddenStateModel` on the sampled AR generator (classifier.kind=head)."""

    families = (AUTOREGRESSIVE,)

    def __init__(self, model: HiddenStateModel, gamma: float, condition: int, *, num_steps: int = 3,
                 step_size: float = 0.1, stability_coef: float = 0.01):
        check_options(num_steps, step_size, stability_coef)
        self.model, self.gamma, self.condition = model, float(gamma), int(condition)
        self.num_steps, self.step_size, self.stability_coef = num_steps, step_size, stability_coef

    def log_probs(self, step: TokenStep) -> torch.Tensor:
        _, hidden = step.hidden()  # (B, i, D)
        before, last = hidden[:, :-1], hidden[:, -1:]
        decode = lambda h: self.model.decode(h, None, step.cond)
        classify = lambda h: self.model.classify(torch.cat([before, h], 1))
        last = perturb_hidden(last, decode, classify, self.condition, gamma=self.gamma, num_steps=self.num_steps,
                              step_size=self.step_size, stability=self.stability_coef)
        with torch.no_grad():
            return decode(last)[:, -1].float().log_softmax(-1)
