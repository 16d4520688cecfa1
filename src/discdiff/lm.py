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
from .duality import DualitySchedule, Relaxation, gaussian_trajectory
from .guidance.base import normalize
from .models.fused_head import RowTerms
from .processes import AbsorbingProcess, DiscreteProcess, UniformProcess
from .processes.base import temper
from .sampling import SampleOutput, StepSchedule, sample, sample_autoregressive
from .schedules import NoiseSchedule


@dataclass
class LossOutput:
    """Mean loss per trained token (what is optimised: padding included when the model trains on
    it, `training.loss_on_pad`), the NELBO summed over the counted tokens and their number (for
    perplexity: padding left out unless `include_padding`, as the paper reports), and the
    per-term breakdown for logging."""

    loss: torch.Tensor
    nll_sum: torch.Tensor
    num_tokens: torch.Tensor
    terms: dict


class LanguageModel(nn.Module, metaclass=ABCMeta):
    """Common surface of every family. `backbone(x, sigma, cond) -> logits (B, L, V)`."""

    family: str  # "diffusion" | "autoregressive": which guidance strategies apply

    def __init__(self, backbone: nn.Module, *, loss_on_pad: bool = True, num_classes: Optional[int] = None,
                 head_chunk_mib: Optional[float] = None):
        super().__init__()
        self.backbone = backbone
        self.head_chunk_mib = head_chunk_mib  # the loss's chunks of head rows (`training.head_chunk_mib`)
        self.loss_on_pad = loss_on_pad
        self.num_classes = num_classes  # conditional models: labels 0..num_classes-1, num_classes = null

    def token_mask(self, batch) -> Optional[torch.Tensor]:
        """The tokens the objective trains on (B, L): all (None) when training on padding."""
        return None if self.loss_on_pad else batch["attention_mask"]

    @staticmethod
    def counted_mask(batch, include_padding: bool) -> Optional[torch.Tensor]:
        """The tokens a reported likelihood counts (B, L): real tokens only, unless include_padding."""
        return None if include_padding else batch["attention_mask"]

    def denoiser(self, xt, sigma, cond=None, return_hidden: bool = False, terms: Optional[RowTerms] = None):
        """Logits (B, L, V) (and the last hidden states (B, L, D) with return_hidden); with `terms`
        the loss terms of each position instead, (loss, terms (B, L, k)), from the head's rows in
        chunks of `head_chunk_mib` (`models.fused_head`)."""
        if terms is not None:
            terms = terms.with_chunk_mib(self.head_chunk_mib)
        return self.backbone(xt, self.network_sigma(sigma), cond, return_hidden=return_hidden, terms=terms)

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
    def loss(self, batch, cond=None, include_padding: bool = False) -> LossOutput:
        """Training loss of a batch, and its NELBO over the counted tokens."""

    @abstractmethod
    def nelbo(self, x0, cond=None, token_mask=None, num_time_samples: int = 1) -> torch.Tensor:
        """Per-sequence negative log-likelihood bound in nats (B,)."""

    @abstractmethod
    def sample(self, num_samples: int, steps: Optional[int] = None, **kwargs) -> SampleOutput:
        """Generate `num_samples` sequences."""

    def compile_sampling(self) -> None:
        """torch.compile what the sampler can fuse; AR decoding replays CUDA graphs already
        (`sampling.autoregressive`), so by default nothing."""


def _count(x0, token_mask):
    if token_mask is None:
        return torch.tensor(float(x0.numel()), device=x0.device)
    return token_mask.sum().float()


def _scale(x0, token_mask, count) -> torch.Tensor:
    """d loss / d per-position term (B, L) of the mean over trained tokens: mask / count."""
    mask = torch.ones(x0.shape, device=x0.device) if token_mask is None else token_mask.float()
    return mask / count


def _sum(per_position: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Total over a batch of per-position values (B, L) under an optional 0/1 mask (B, L)."""
    return (per_position if mask is None else per_position * mask.to(per_position.dtype)).sum()


class DiffusionLM(LanguageModel):
    """A denoiser trained with the NELBO of its process.

    T = 0: continuous-time NELBO (MDLM / UDLM); T > 0: discrete-time D3PM NELBO with T steps.
    relaxation: DUO's curriculum input for a uniform-noise model (`relaxed_loss`).
    """

    family = "diffusion"

    def __init__(self, backbone, process: DiscreteProcess, schedule: NoiseSchedule, length: int, *,
                 T: int = 0, time_conditioning: bool = True, antithetic_sampling: bool = True,
                 importance_sampling: bool = False, change_of_variables: bool = False,
                 sampling_eps: float = 1e-3, zero_recon_loss: bool = False, use_simple_ce_loss: bool = False,
                 loss_on_pad: bool = True, num_classes: Optional[int] = None, head_chunk_mib: Optional[float] = None,
                 relaxation: Optional[Relaxation] = None):
        super().__init__(backbone, loss_on_pad=loss_on_pad, num_classes=num_classes, head_chunk_mib=head_chunk_mib)
        if relaxation is not None and not isinstance(process, UniformProcess):
            raise ValueError("the Gaussian curriculum (training.curriculum) applies to uniform noise only (algo=udlm)")
        self.process, self.schedule, self.length, self.relaxation = process, schedule, length, relaxation
        self.T, self.time_conditioning = T, time_conditioning
        self.antithetic_sampling, self.sampling_eps = antithetic_sampling, sampling_eps
        # change of variables: sample in the importance coordinate and condition the network on it
        self.importance_sampling = importance_sampling or change_of_variables
        self.change_of_variables = change_of_variables
        self.zero_recon_loss, self.use_simple_ce_loss = zero_recon_loss, use_simple_ce_loss

    def nelbo_terms(self, x0, cond=None, loss_scale: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """One-sample NELBO terms per position (B, L) at random times (diffusion, recon, prior and
        their sum nelbo; continuous time also gives log_lik, log x_theta(x0) (B, L)), detached,
        and `loss`: the training loss sum_l loss_scale_l * term_l with the network's gradient, for
        loss_scale (B, L) = d loss / d term (the trained positions over their count), where the
        term is the NELBO, or -log_lik under `use_simple_ce_loss` (no loss_scale: a zero loss)."""
        b, device = x0.shape[0], x0.device
        common = dict(cond=cond, reduce=False)
        scale = None if loss_scale is None else loss_scale[..., None]
        if self.T > 0:
            i = torch.randint(1, self.T + 1, (b,), device=device)
            kl, diffusion_loss = objectives.discrete_nelbo_terms(
                self.process, self.schedule, self.denoiser, x0, self.T, i,
                weights=None if scale is None else self.T * scale, **common)
            terms = {"diffusion": self.T * kl}
        else:
            t, weight = self.draw_times(b, device)
            weights = None if scale is None else self._continuous_weights(scale, weight)
            terms = objectives.continuous_nelbo_terms(self.process, self.schedule, self.denoiser, x0, t,
                                                      weights=weights, **common)
            diffusion_loss = terms.pop("loss")
            terms["diffusion"] = terms["diffusion"] * weight[:, None]
        recon_weights = None if scale is None or self.zero_recon_loss or self.use_simple_ce_loss else scale
        terms["recon"], recon_loss = objectives.reconstruction_nll(self.process, self.schedule, self.denoiser, x0,
                                                                    weights=recon_weights, **common)
        if self.zero_recon_loss:
            terms["recon"] = torch.zeros_like(terms["recon"])
        terms["prior"] = objectives.prior_term(self.process, self.schedule, x0, reduce=False)
        terms["nelbo"] = terms["diffusion"] + terms["recon"] + terms["prior"]
        prior_loss = 0 if loss_scale is None or self.use_simple_ce_loss else (terms["prior"] * loss_scale).sum()
        terms["loss"] = diffusion_loss + recon_loss + prior_loss
        return terms

    def _continuous_weights(self, scale: torch.Tensor, time_weight: torch.Tensor) -> torch.Tensor:
        """d loss / d (integrand, log_lik) (B, L, 2): the time-weighted integrand of the NELBO, or
        -log_lik (the simple cross-entropy)."""
        if self.use_simple_ce_loss:
            return torch.cat([torch.zeros_like(scale), -scale], dim=-1)
        return torch.cat([scale * time_weight[:, None, None], torch.zeros_like(scale)], dim=-1)

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

    def loss(self, batch, cond=None, include_padding: bool = False) -> LossOutput:
        x0, trained, counted = batch["input_ids"], self.token_mask(batch), self.counted_mask(batch, include_padding)
        count = _count(x0, trained)
        terms = self.nelbo_terms(x0, cond, loss_scale=_scale(x0, trained, count))
        logged = {k: _sum(terms[k], trained) / count for k in ("diffusion", "recon", "prior", "nelbo")}
        return LossOutput(terms["loss"], _sum(terms["nelbo"], counted), _count(x0, counted), logged)

    def relaxed_loss(self, batch, cond=None) -> LossOutput:
        """DUO's curriculum loss (Sec. 4.1 of arXiv 2506.10892; L_train, Eq. 21 of v3, with the
        Rao-Blackwellised f_Duo of its Eq. 17): t ~ U[0, 1] over the relaxation's
        log-SNR window (antithetic when configured), z = argmax(w) of a Gaussian w per position, and
        the UDLM NELBO integrand (Schiff et al. Eq. 18) at x_t = z with alpha = T(a_t) and its
        derivative, while the network reads softmax(w / tau). Only the window's diffusion term is
        trained (the prior and reconstruction terms have no gradient here); it is what `terms`
        report (as `diffusion`: the window's, not the model's diffusion term) and what nll_sum sums."""
        if self.relaxation is None:
            raise ValueError("this model has no curriculum: set training.curriculum.steps > 0")
        x0, trained, counted = batch["input_ids"], self.token_mask(batch), self.counted_mask(batch, False)
        count = _count(x0, trained)
        t = objectives.sample_times(x0.shape[0], antithetic=self.antithetic_sampling, eps=0.0, device=x0.device)
        weights = self._continuous_weights(_scale(x0, trained, count)[..., None], torch.ones_like(t))
        terms = objectives.continuous_nelbo_terms(self.process, self.relaxation.schedule, self.denoiser, x0, t,
                                                  cond=cond, reduce=False, weights=weights,
                                                  latent=self.relaxation.latent)
        diffusion = terms["diffusion"]
        return LossOutput(terms["loss"], _sum(diffusion, counted), _count(x0, counted),
                          {"diffusion": _sum(diffusion, trained) / count})

    def distillation_loss(self, batch, cond, teacher: nn.Module, window: DualitySchedule, delta: float,
                          divergence: str = "kl-bwd", cfg_gamma: Optional[float] = None) -> LossOutput:
        """Discrete consistency distillation (DUO, arXiv 2506.10892, Sec. 4.2; `objectives.
        consistency_distillation_terms`): t ~ U[0, 1] (antithetic when configured), the pair of
        times (min(t + delta, 1), min(t + delta, 1) - delta) mapped through `window` to log-SNRs, one
        Gaussian trajectory of x0 through both, and this model at the noisier point against the
        frozen `teacher` backbone at the cleaner one (`teacher_prediction`: guided at `cfg_gamma`
        when given). `terms` report the mean divergence."""
        x0, trained = batch["input_ids"], self.token_mask(batch)
        count = _count(x0, trained)
        t = objectives.sample_times(x0.shape[0], antithetic=self.antithetic_sampling, eps=0.0, device=x0.device)
        t_noisy = (t + delta).clamp(max=1.0)
        t_clean = t_noisy - delta
        latents = gaussian_trajectory(x0, window.log_snr(t_noisy), window.log_snr(t_clean), self.process.vocab_size)
        sigmas = (window.sigma(t_noisy), window.sigma(t_clean))
        target = lambda z, sigma, c: self.teacher_prediction(teacher, z, sigma, c, cfg_gamma)
        loss, divergences = objectives.consistency_distillation_terms(
            self.process, self.denoiser, target, latents, sigmas, cond, _scale(x0, trained, count), divergence)
        mean = _sum(divergences, trained) / count
        return LossOutput(loss, _sum(divergences, trained), count, {"divergence": mean})

    def teacher_prediction(self, teacher: nn.Module, xt, sigma, cond, cfg_gamma: Optional[float] = None):
        """log x_theta (B, L, V) of a frozen `teacher` backbone at (xt, sigma) for labels `cond`.
        With `cfg_gamma`, a label's prediction is the teacher's D-CFG one (paper Sec. 3.1) at that
        gamma: normalize(gamma log x_theta(y) + (1 - gamma) log x_theta(null)), the guided step's
        distribution of x0 once x_t's likelihood is left out (the step to alpha = 1 with
        alpha_t = 0); a null label's is the unconditional prediction (the tempering of it with
        itself). A student distilled on it samples the teacher's gamma with its plain conditional
        prediction, one network pass per step."""
        if cfg_gamma is None or cond is None:
            return self.process.predict_x0(teacher(xt, self.network_sigma(sigma), cond), xt)
        null = torch.full_like(cond, self.num_classes)
        pair = torch.cat([xt, xt])
        both = self.process.predict_x0(teacher(pair, self.network_sigma(torch.cat([sigma, sigma])),
                                               torch.cat([cond, null])), pair)
        conditional, unconditional = both.chunk(2)
        return normalize(temper(conditional, unconditional, float(cfg_gamma)))

    @torch.no_grad()
    def nelbo(self, x0, cond=None, token_mask=None, num_time_samples: int = 1) -> torch.Tensor:
        """Per-sequence NELBO in nats (B,) over the tokens of `token_mask` (all when None),
        averaged over `num_time_samples` draws of t."""
        draws = [self.nelbo_terms(x0, cond)["nelbo"] for _ in range(num_time_samples)]
        per_position = torch.stack(draws).mean(0)
        return (per_position if token_mask is None else per_position * token_mask.to(per_position.dtype)).sum(-1)

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int = 128, *, cond=None, guidance=None, eps: float = 1e-5,
               argmax: bool = False, use_cache: bool = True, float64: bool = False, compile: bool = False,
               corrector: Optional[StepSchedule] = None, top_p: float = 1.0, greedy_last: bool = False,
               block_length: Optional[int] = None, length: Optional[int] = None, generator=None,
               progress: bool = False) -> SampleOutput:
        """`sampling.diffusion.sample` of this model (its arguments; `length` defaults to the model's)."""
        device = next(self.parameters()).device
        if compile:
            self.compile_sampling()
        return sample(self.process, self.schedule, self.denoiser, (num_samples, self.length), steps,
                      cond=cond, guidance=guidance, eps=eps, argmax=argmax, use_cache=use_cache,
                      time_conditioned=self.time_conditioning, float64=float64, device=device,
                      generator=generator, progress=progress, corrector=corrector, top_p=top_p,
                      greedy_last=greedy_last, block_length=block_length, length=length)

    def compile_sampling(self) -> None:
        """The process's guided-step reductions (`DiscreteProcess.compile_sampling`)."""
        self.process.compile_sampling()


class AutoregressiveLM(LanguageModel):
    """Causal backbone trained with next-token cross-entropy; sampled left to right."""

    family = "autoregressive"

    def __init__(self, backbone, length: int, bos_id: int, *, loss_on_pad: bool = True,
                 num_classes: Optional[int] = None, head_chunk_mib: Optional[float] = None):
        super().__init__(backbone, loss_on_pad=loss_on_pad, num_classes=num_classes, head_chunk_mib=head_chunk_mib)
        self.length, self.bos_id = length, bos_id

    def corrupt(self, x0):
        """An AR model reads clean tokens."""
        return x0, None

    def loss(self, batch, cond=None, include_padding: bool = False) -> LossOutput:
        x0, trained, counted = batch["input_ids"], self.token_mask(batch), self.counted_mask(batch, include_padding)
        trained, counted = (None if m is None else m[:, 1:] for m in (trained, counted))
        count = _count(x0[:, 1:], trained)
        nll, loss = objectives.autoregressive_nll(self.denoiser, x0, cond, reduce=False,
                                                  weights=_scale(x0[:, 1:], trained, count))  # (B, L - 1)
        return LossOutput(loss, _sum(nll, counted), _count(x0[:, 1:], counted), {"nelbo": _sum(nll, trained) / count})

    @torch.no_grad()
    def nelbo(self, x0, cond=None, token_mask=None, num_time_samples: int = 1) -> torch.Tensor:
        """Exact negative log-likelihood per sequence in nats (B,)."""
        return objectives.autoregressive_nll(self.denoiser, x0, cond, token_mask)[0]

    @torch.no_grad()
    def sample(self, num_samples: int, steps: Optional[int] = None, *, cond=None, guidance=None,
               argmax: bool = False, use_cache: bool = True, float64: bool = False, top_p: float = 1.0,
               corrector: Optional[StepSchedule] = None, greedy_last: bool = False,
               block_length: Optional[int] = None, length: Optional[int] = None, generator=None,
               progress: bool = False, **_ignored) -> SampleOutput:
        """Left-to-right decoding of `length` tokens (`steps`, `eps` and `compile` do not apply to
        AR models); the diffusion samplers' corrector, greedy last step and blocks are refused."""
        if corrector is not None and corrector.corrects():
            raise ValueError(f"sampling.method={corrector.name} applies to diffusion models; an autoregressive "
                             f"model decodes left to right (sampling.method=ancestral)")
        if greedy_last or block_length is not None or length not in (None, self.length):
            raise ValueError("sampling.greedy_last, sampling.block_length and sampling.length apply to diffusion "
                             f"models; an autoregressive model writes its {self.length} tokens (use sampling.argmax "
                             "for greedy decoding)")
        return sample_autoregressive(self.backbone, num_samples, self.length, self.bos_id, cond=cond,
                                     guidance=guidance, use_cache=use_cache, argmax=argmax, top_p=top_p,
                                     float64=float64, generator=generator, progress=progress)


#: diffusion (the config key) -> its forward process
PROCESSES = {"absorbing_state": AbsorbingProcess, "uniform": UniformProcess}


def _process_class(diffusion: str) -> type[DiscreteProcess]:
    if diffusion not in PROCESSES:
        raise ValueError(f"unknown diffusion '{diffusion}'; allowed: {', '.join(PROCESSES)}")
    return PROCESSES[diffusion]


def data_vocab_size(tokenizer) -> int:
    """Ids the data can hold: the tokenizer's vocabulary less a mask token kept apart for masked
    diffusion (`extra_mask`: images), which clean data never holds."""
    return tokenizer.vocab_size - int(bool(getattr(tokenizer, "extra_mask", False)))


def model_vocab_size(diffusion: str, tokenizer) -> int:
    """Ids a generator of the `diffusion` process reads and emits: the whole vocabulary when the
    process has a mask state or the tokenizer keeps no mask apart, else the data's ids (UDLM on
    images: the 256 pixel values, no wasted mask)."""
    return tokenizer.vocab_size if _process_class(diffusion).uses_mask else data_vocab_size(tokenizer)


def build_process(diffusion: str, vocab_size: int, mask_id: int, **options) -> DiscreteProcess:
    """The forward process named by the `diffusion` config key (options: the absorbing
    process's carry_over / subs_masking; a process without a mask state takes none)."""
    process = _process_class(diffusion)
    return process(vocab_size, mask_id, **options) if process.uses_mask else process(vocab_size)
