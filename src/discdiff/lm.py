"""Language models: a backbone plus the family's objective and sampler behind one interface.

`DiffusionLM` (MDLM, UDLM, D3PM) and `AutoregressiveLM` (AR) share the methods the trainer and the
command line use (`loss`, `nelbo`, `sample`), so nothing outside this module and the process
classes depends on the model family. Which family and process a config asks for is decided once,
in `build_language_model`.

Batches are dicts of `input_ids` (B, L), `attention_mask` (B, L) and optionally `label` (B,).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from . import objectives
from .processes import AbsorbingProcess, DiscreteProcess, UniformProcess
from .sampling import SampleOutput, sample, sample_autoregressive
from .schedules import NoiseSchedule


@dataclass
class LossOutput:
    """Mean loss per scored token (what is optimised), summed NELBO and token count (for
    perplexity), and the per-term breakdown for logging."""

    loss: torch.Tensor
    nll_sum: torch.Tensor
    num_tokens: torch.Tensor
    terms: dict


class LanguageModel(nn.Module, metaclass=ABCMeta):
    """Common surface of every family. `backbone(x, sigma, cond) -> logits (B, L, V)`."""

    family: str  # "diffusion" | "autoregressive": which guidance strategies apply

    def __init__(self, backbone: nn.Module, *, loss_on_pad: bool = True, num_classes: Optional[int] = None):
        super().__init__()
        self.backbone = backbone
        self.loss_on_pad = loss_on_pad
        self.num_classes = num_classes  # conditional models: labels 0..num_classes-1, num_classes = null

    def token_mask(self, batch) -> Optional[torch.Tensor]:
        return None if self.loss_on_pad else batch["attention_mask"]

    def denoiser(self, xt, sigma, cond=None, return_hidden: bool = False):
        """Logits (B, L, V) (and the last hidden states (B, L, D) with return_hidden)."""
        return self.backbone(xt, self.network_sigma(sigma), cond, return_hidden=return_hidden)

    def network_sigma(self, sigma):
        """The time input the backbone reads for noise level sigma (B,)."""
        return sigma

    def decode_hidden(self, hidden, sigma=None, cond=None):
        """Logits (B, L, V) of (possibly perturbed) last hidden states (B, L, D): the backbone's head."""
        return self.backbone.head(hidden, self.network_sigma(sigma), cond)

    @abstractmethod
    def corrupt(self, x0) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(x_t, sigma_t) at random training times: what the network reads in training."""

    @abstractmethod
    def loss(self, batch, cond=None) -> LossOutput:
        """Training loss of a batch."""

    @abstractmethod
    def nelbo(self, x0, cond=None, token_mask=None, num_time_samples: int = 1) -> torch.Tensor:
        """Per-sequence negative log-likelihood bound in nats (B,)."""

    @abstractmethod
    def sample(self, num_samples: int, steps: Optional[int] = None, **kwargs) -> SampleOutput:
        """Generate `num_samples` sequences."""


def _count(x0, token_mask):
    if token_mask is None:
        return torch.tensor(float(x0.numel()), device=x0.device)
    return token_mask.sum().float()


class DiffusionLM(LanguageModel):
    """A denoiser trained with the NELBO of its process.

    T = 0: continuous-time NELBO (MDLM / UDLM); T > 0: discrete-time D3PM NELBO with T steps.
    """

    family = "diffusion"

    def __init__(self, backbone, process: DiscreteProcess, schedule: NoiseSchedule, length: int, *,
                 T: int = 0, time_conditioning: bool = True, antithetic_sampling: bool = True,
                 importance_sampling: bool = False, change_of_variables: bool = False,
                 sampling_eps: float = 1e-3, zero_recon_loss: bool = False, use_simple_ce_loss: bool = False,
                 loss_on_pad: bool = True, num_classes: Optional[int] = None):
        super().__init__(backbone, loss_on_pad=loss_on_pad, num_classes=num_classes)
        self.process, self.schedule, self.length = process, schedule, length
        self.T, self.time_conditioning = T, time_conditioning
        self.antithetic_sampling, self.sampling_eps = antithetic_sampling, sampling_eps
        # change of variables: sample in the importance coordinate and condition the network on it
        self.importance_sampling = importance_sampling or change_of_variables
        self.change_of_variables = change_of_variables
        self.zero_recon_loss, self.use_simple_ce_loss = zero_recon_loss, use_simple_ce_loss

    def nelbo_terms(self, x0, cond=None, token_mask=None) -> dict[str, torch.Tensor]:
        """One-sample NELBO terms per sequence (B,) at random times."""
        b, device = x0.shape[0], x0.device
        if self.T > 0:
            i = torch.randint(1, self.T + 1, (b,), device=device)
            diffusion = self.T * objectives.discrete_nelbo_terms(
                self.process, self.schedule, self.denoiser, x0, self.T, i, cond, token_mask)
            terms = {"diffusion": diffusion,
                     "recon": objectives.reconstruction_nll(self.process, self.schedule, self.denoiser, x0,
                                                            cond, token_mask),
                     "prior": objectives.prior_term(self.process, self.schedule, x0, token_mask)}
        else:
            t, weight = self.draw_times(b, device)
            terms = objectives.continuous_nelbo_terms(self.process, self.schedule, self.denoiser, x0, t,
                                                      cond, token_mask)
            terms["diffusion"] = terms["diffusion"] * weight
        if self.zero_recon_loss:
            terms["recon"] = torch.zeros_like(terms["recon"])
        terms["nelbo"] = terms["diffusion"] + terms["recon"] + terms["prior"]
        return terms

    def network_sigma(self, sigma):
        """sigma (B,), or under the change of variables the importance coordinate u(alpha) in [0, 1]."""
        if self.change_of_variables and sigma is not None:
            return objectives.masking_coordinate(self.schedule, torch.exp(-sigma), self.sampling_eps)
        return sigma

    def corrupt(self, x0):
        """x_t ~ q(x_t | x0) and sigma_t at t ~ U[eps, 1] (antithetic when configured)."""
        return objectives.corrupt(self.process, self.schedule, x0, antithetic=self.antithetic_sampling,
                                  eps=self.sampling_eps)

    def draw_times(self, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Times t (B,) in [eps, 1] and the weights turning the integrand into an unbiased
        estimate of its integral: 1 - eps for t ~ U[eps, 1], 1 / p(t) under importance sampling."""
        u = objectives.sample_times(batch_size, antithetic=self.antithetic_sampling, eps=0.0, device=device)
        if self.importance_sampling:
            return objectives.importance_times(self.schedule, u, self.sampling_eps)
        eps = self.sampling_eps
        return eps + (1 - eps) * u, torch.full_like(u, 1 - eps)

    def loss(self, batch, cond=None) -> LossOutput:
        x0, token_mask = batch["input_ids"], self.token_mask(batch)
        terms = self.nelbo_terms(x0, cond, token_mask)
        count = _count(x0, token_mask)
        if self.use_simple_ce_loss:
            objective = objectives.simple_ce(terms["log_x_theta"], x0, token_mask).sum() / count
        else:
            objective = terms["nelbo"].sum() / count
        logged = {k: v.detach().sum() / count for k, v in terms.items() if v.dim() == 1}
        return LossOutput(objective, terms["nelbo"].detach().sum(), count, logged)

    @torch.no_grad()
    def nelbo(self, x0, cond=None, token_mask=None, num_time_samples: int = 1) -> torch.Tensor:
        """Per-sequence NELBO in nats (B,), averaged over `num_time_samples` draws of t."""
        draws = [self.nelbo_terms(x0, cond, token_mask)["nelbo"] for _ in range(num_time_samples)]
        return torch.stack(draws).mean(0)

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int = 128, *, cond=None, guidance=None, eps: float = 1e-5,
               argmax: bool = False, use_cache: bool = True, float64: bool = False,
               generator=None, progress: bool = False) -> SampleOutput:
        device = next(self.parameters()).device
        return sample(self.process, self.schedule, self.denoiser, (num_samples, self.length), steps,
                      cond=cond, guidance=guidance, eps=eps, argmax=argmax, use_cache=use_cache,
                      time_conditioned=self.time_conditioning, float64=float64, device=device,
                      generator=generator, progress=progress)


class AutoregressiveLM(LanguageModel):
    """Causal backbone trained with next-token cross-entropy; sampled left to right."""

    family = "autoregressive"

    def __init__(self, backbone, length: int, bos_id: int, *, loss_on_pad: bool = True,
                 num_classes: Optional[int] = None):
        super().__init__(backbone, loss_on_pad=loss_on_pad, num_classes=num_classes)
        self.length, self.bos_id = length, bos_id

    def corrupt(self, x0):
        """An AR model reads clean tokens."""
        return x0, None

    def loss(self, batch, cond=None) -> LossOutput:
        x0, token_mask = batch["input_ids"], self.token_mask(batch)
        nll = objectives.autoregressive_nll(self.backbone(x0, None, cond), x0, token_mask)
        count = _count(x0[:, 1:], None if token_mask is None else token_mask[:, 1:])
        return LossOutput(nll.sum() / count, nll.detach().sum(), count, {"nelbo": nll.detach().sum() / count})

    @torch.no_grad()
    def nelbo(self, x0, cond=None, token_mask=None, num_time_samples: int = 1) -> torch.Tensor:
        """Exact negative log-likelihood per sequence in nats (B,)."""
        return objectives.autoregressive_nll(self.backbone(x0, None, cond), x0, token_mask)

    @torch.no_grad()
    def sample(self, num_samples: int, steps: Optional[int] = None, *, cond=None, guidance=None,
               argmax: bool = False, use_cache: bool = True, generator=None, progress: bool = False,
               **_ignored) -> SampleOutput:
        """Left-to-right decoding of `length` tokens (`steps` does not apply to AR models)."""
        return sample_autoregressive(self.backbone, num_samples, self.length, self.bos_id, cond=cond,
                                     guidance=guidance, use_cache=use_cache, argmax=argmax, generator=generator,
                                     progress=progress)


PROCESSES = {
    "absorbing_state": lambda vocab_size, mask_id, **options: AbsorbingProcess(vocab_size, mask_id, **options),
    "uniform": lambda vocab_size, mask_id, **options: UniformProcess(vocab_size),
}


def build_process(diffusion: str, vocab_size: int, mask_id: int, **options) -> DiscreteProcess:
    """The forward process named by the `diffusion` config key (options: the absorbing
    process's carry_over / subs_masking)."""
    if diffusion not in PROCESSES:
        raise ValueError(f"unknown diffusion '{diffusion}'; allowed: {', '.join(PROCESSES)}")
    return PROCESSES[diffusion](vocab_size, mask_id, **options)
