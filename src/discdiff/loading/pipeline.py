"""`Pipeline`: a trained model with its tokenizer and configuration, ready to sample, score and
guide (what `discdiff.load` returns)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig

from ..factory import classifier_vocab_size
from ..guidance import CBG, CFG, FUDGE, NOS, PPLM
from ..lm import LanguageModel
from ..sampling import SampleOutput, step_schedule
from .classifiers import load_classifier


class Pipeline:
    """A trained language model with its tokenizer (EMA weights unless disabled)."""

    def __init__(self, lm: LanguageModel, tokenizer, cfg: DictConfig, checkpoint: Path, run_dir: Path):
        self.lm, self.tokenizer, self.cfg = lm.eval(), tokenizer, cfg
        self.checkpoint, self.run_dir = checkpoint, run_dir

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def to(self, device) -> "Pipeline":
        self.lm.to(device)
        return self

    def labels(self, label: Optional[int], n: int) -> Optional[torch.Tensor]:
        """Class labels (n,) for a conditional model; None (the null class) when label is None."""
        if label is None:
            return None
        if self.lm.num_classes is None or not 0 <= label < self.lm.num_classes:
            allowed = "none (unconditional model)" if self.lm.num_classes is None else f"0..{self.lm.num_classes - 1}"
            raise ValueError(f"label {label} is not a class of this model; allowed: {allowed}")
        return torch.full((n,), label, dtype=torch.long, device=self.device)

    def guidance(self, name: Optional[str], gamma: float = 1.0, condition: int = 1, *, classifier=None,
                 **options):
        """A guidance strategy for this model by name (None: unguided); see GUIDANCE.

        cfg: D-CFG; needs a label-conditional model, whose extra label is the null class.
        cbg (noisy classifier), nos and pplm (head classifiers), fudge (prefix classifier): `classifier`
        is a run folder / .ckpt of `discdiff train-classifier` (see `load_classifier`) or, for cbg
        and fudge, any callable `classifier(x, sigma) -> log p(y | x)`. A loaded classifier must be
        of the method's kind and read this model's vocabulary (cbg: its forward process; nos /
        pplm: this very generator). options: use_approx (cbg, first order); topk (fudge); num_nos_steps,
        nos_step_size, nos_stability_coef (nos); num_pplm_steps, pplm_step_size,
        pplm_stability_coef (pplm)."""
        if name is None:
            return None
        if name not in GUIDANCE:
            raise ValueError(f"unknown guidance '{name}'; allowed: {', '.join(GUIDANCE)}")
        strategy, kind, names = GUIDANCE[name]
        strategy.check_family(self.lm.family)
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(f"guidance={name} has no option {', '.join(unknown)}; "
                             f"allowed: {', '.join(names) or 'gamma, condition only'}")
        settings = {names[key]: value for key, value in options.items()}  # absent: the class's defaults
        if kind is None:
            return self._cfg(gamma, condition)
        if classifier is None:
            raise ValueError(f"guidance={name} needs a classifier: guidance.classifier=RUN_DIR "
                             f"(a run folder of discdiff train-classifier classifier.kind={kind})")
        if isinstance(classifier, (str, Path)):
            classifier = load_classifier(classifier, device=self.device)
        self.check_classifier(classifier, condition, kind)
        return strategy(classifier, gamma, condition, **settings)

    def _cfg(self, gamma: float, condition: int) -> CFG:
        if self.lm.num_classes is None:
            raise ValueError("guidance=cfg needs a label-conditional model (train with data.label_col=...)")
        self.labels(condition, 1)  # refuses a class the model does not have
        return CFG(gamma, condition, null_class=self.lm.num_classes)

    def check_classifier(self, classifier, condition: int, kind: str) -> None:
        """Refuse a loaded classifier that cannot guide this model: another kind than the method
        needs, another vocabulary or forward process, another generator, or a class it lacks."""
        cfg = getattr(classifier, "cfg", None)
        where = getattr(classifier, "run_dir", "the classifier")
        if cfg is not None and cfg.classifier.kind != kind:
            raise ValueError(f"{where} is a classifier.kind={cfg.classifier.kind} classifier; this guidance "
                             f"needs kind={kind}")
        vocab = getattr(classifier, "vocab_size", None)
        expected = self.classifier_vocab_size(kind)
        if vocab is not None and vocab != expected:
            raise ValueError(f"{where} has a vocabulary of {vocab} tokens, a {kind} classifier of this model "
                             f"{expected}; train the classifier on the same data and tokenizer")
        if kind == "noisy" and cfg is not None and cfg.diffusion != self.cfg.diffusion:
            raise ValueError(f"{where} was trained on the {cfg.diffusion} process, this model uses "
                             f"{self.cfg.diffusion}; train the classifier with the generator's algo")
        if kind == "head" and not _same_weights(classifier.generator, self.lm):
            raise ValueError(f"{where} was trained on another generator (or its non-EMA weights); "
                             "train the head with classifier.generator= this run")
        classes = getattr(classifier, "num_classes", None)
        if classes is not None and not 0 <= condition < classes:
            raise ValueError(f"guidance.condition={condition} is not a class of {where}; allowed: 0..{classes - 1}")

    def classifier_vocab_size(self, kind: str) -> int:
        """Ids a classifier of `kind` reads for this model (`factory.classifier_vocab_size`)."""
        return classifier_vocab_size(kind, self.cfg.diffusion, self.tokenizer)

    @torch.no_grad()
    def sample(self, num_samples: int, steps: Optional[int] = None, *, label: Optional[int] = None,
               batch_size: Optional[int] = None, seed: Optional[int] = None, progress: bool = False,
               **options) -> SampleOutput:
        """Sample token ids (num_samples, L) in batches; options go to the family's sampler
        (`sampler_options`); `float64` None (or absent) draws in float64 where the vocabulary is
        large (`draws_in_float64`)."""
        steps = steps or self.cfg.sampling.steps
        if options.get("float64") is None:
            options["float64"] = draws_in_float64(self.tokenizer.vocab_size)
        batch_size = batch_size or num_samples
        generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        chunks, nfe = [], 0
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                out = self.lm.sample(n, steps, cond=self.labels(label, n), generator=generator,
                                     progress=progress, **options)
            chunks.append(out.tokens)
            nfe = max(nfe, out.nfe)
        return SampleOutput(tokens=torch.cat(chunks), nfe=nfe)

    @torch.no_grad()
    def nelbo(self, token_ids: torch.Tensor, labels: Optional[torch.Tensor] = None,
              num_time_samples: int = 1) -> torch.Tensor:
        """Per-sequence NELBO (exact NLL for AR) in nats (B,)."""
        return self.lm.nelbo(token_ids.to(self.device), labels, num_time_samples=num_time_samples)

    def decode(self, token_ids) -> list[str]:
        return self.tokenizer.batch_decode(token_ids)


#: vocabularies at least this large (word pieces) draw in float64 unless sampling.float64 says otherwise
FLOAT64_VOCABULARY = 1000


def draws_in_float64(vocab_size: int) -> bool:
    """Whether sampling.float64=null draws in float64: for word-piece vocabularies. float32 Gumbel
    noise cannot reach the far tail of a 30,000-token distribution (its uniforms stop 2^-24 from 0
    and 1), which lowers generative perplexity and entropy artificially (BENCHMARKS.md measures it
    on the text study); characters, SMILES, nucleotides and pixels draw in float32."""
    return vocab_size >= FLOAT64_VOCABULARY


def sampler_options(sampling: DictConfig) -> dict:
    """The `sampling` section's options of the samplers (`LanguageModel.sample`); the method and its
    keys become the step schedule (`step_schedules.step_schedule`)."""
    corrector = step_schedule(sampling.method, kappa=sampling.kappa, eta=sampling.eta,
                              remdm_schedule=sampling.remdm_schedule, t_on=sampling.t_on, t_off=sampling.t_off,
                              alpha_on=sampling.alpha_on)
    plain = ("eps", "argmax", "use_cache", "float64", "compile", "top_p", "greedy_last", "block_length", "length")
    return {"corrector": corrector, **{k: sampling[k] for k in plain}}


def sampler_label(sampling: DictConfig) -> str:
    """A short, file-name-safe name of the sampler the `sampling` section describes: its step
    schedule (`StepSchedule.label`), then -p<top_p>, -greedy, -b<block_length>-n<length> where set."""
    label = sampler_options(sampling)["corrector"].label()
    label += f"-p{sampling.top_p:g}" if sampling.top_p < 1 else ""
    label += "-greedy" if sampling.greedy_last else ""
    label += f"-b{sampling.block_length}-n{sampling.length}" if sampling.block_length is not None else ""
    return label


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


#: guidance name -> (strategy class, classifier.kind it needs (None: no classifier),
#: {config option: constructor argument})
GUIDANCE = {
    "cfg": (CFG, None, {}),
    "cbg": (CBG, "noisy", {"use_approx": "first_order"}),
    "nos": (NOS, "head", {"num_nos_steps": "num_steps", "nos_step_size": "step_size",
                          "nos_stability_coef": "stability_coef"}),
    "fudge": (FUDGE, "prefix", {"topk": "topk"}),
    "pplm": (PPLM, "head", {"num_pplm_steps": "num_steps", "pplm_step_size": "step_size",
                            "pplm_stability_coef": "stability_coef"}),
}
