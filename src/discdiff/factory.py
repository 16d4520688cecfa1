"""Build a language model or classifier from a resolved configuration: the one place that reads
the model-family knobs (parameterization, diffusion, T, noise) and picks classes accordingly, and
the one owner of the rules that join them (which algo a configuration is, what a classifier of
each kind reads)."""

from __future__ import annotations

from functools import partial
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from . import objectives
from .data.registry import get_spec
from .duality import DualitySchedule, Relaxation
from .lm import AutoregressiveLM, DiffusionLM, LanguageModel, build_process, data_vocab_size, model_vocab_size
from .models import MODEL_SIZES, HiddenStateClassifier, SequenceClassifier, build_backbone, build_encoder
from .models.classifier import CLASSIFIER_KINDS
from .models.dimamba import DIMAMBA_SIZES, build_dimamba
from .models.unet import build_unet, check_unet
from .schedules import get_schedule

PRETRAINED = "hf_dit"  # model=hf_dit: a DiT in the published UDLM / MDLM layout (discdiff.hub)
#: diffusion -> the algo (`algo=`) of a diffusion model over that process
DIFFUSION_ALGOS = {"uniform": "udlm", "absorbing_state": "mdlm"}
NOISY_NEEDS_DIFFUSION = ("noisy classifiers are for diffusion models: use algo=mdlm or algo=udlm "
                         "(classifier.kind=prefix or head serve AR models, kind=clean evaluates)")


def algo_name(cfg: DictConfig) -> str:
    """The algo of a configuration's family: ar, mdlm or udlm."""
    return "ar" if cfg.parameterization == "ar" else DIFFUSION_ALGOS[cfg.diffusion]


def label_classes(cfg: DictConfig) -> Optional[int]:
    """Classes of data.label_col (None for an unlabelled run): binary for thresholded properties
    (QM9) and sentiment, ten for species and images (the dataset registry says)."""
    return None if cfg.data.label_col is None else get_spec(cfg.data.name).num_classes


def vocab_info(tokenizer, vocab_size: Optional[int] = None) -> dict:
    """What a checkpoint rebuilds its network from: `vocab_size`, the ids the network reads (null:
    the tokenizer's whole vocabulary; see `lm.model_vocab_size`), and the special token ids."""
    return {"vocab_size": tokenizer.vocab_size if vocab_size is None else vocab_size, "pad_id": tokenizer.pad_id,
            "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "mask_id": tokenizer.mask_id}


def _overrides(m, keys) -> dict:
    return {k: m[k] for k in keys if m.get(k) is not None}


def _dit(m, data, vocab_size: int, **options):
    """model=micro|tiny|small|medium (a DiT size with optional overrides) or model=hf_dit."""
    dims = _overrides(m, ("n_blocks", "hidden_size", "n_heads", "cond_dim"))
    if m.name == PRETRAINED:
        if len(dims) < 4:
            raise ValueError("model=hf_dit needs its dimensions; discdiff train reads them from model.pretrained")
        size = dims
    else:
        size = {**MODEL_SIZES[m.name], **dims}
    return build_backbone(size, vocab_size, data.length, dropout=m.dropout, **options)


def _dimamba(m, data, vocab_size: int, *, conditioning: str, **options):
    """model=dimamba: the bidirectional (causal for AR) Mamba of `model.size`, with overrides."""
    spec = {**DIMAMBA_SIZES[m.size], **_overrides(m, ("n_blocks", "hidden_size", "cond_dim", "d_state", "d_conv",
                                                      "expand", "chunk_size"))}
    return build_dimamba(spec, vocab_size, data.length, dropout=m.dropout, **options)


def _unet(m, data, vocab_size: int, *, causal: bool, conditioning: str, **options):
    """model=unet: the image UNet of `model.size` over the dataset's image shape (diffusion only)."""
    shape = get_spec(data.name).image_shape
    check_unet("model=unet", shape, causal, dataset=f"data={data.name}")
    return build_unet(m.size, vocab_size, data.length, shape, dropout=m.dropout, **options)


#: model.name -> builder; the DiT sizes (micro, tiny, small, medium) build a DiT.
BACKBONES = {PRETRAINED: _dit, "dimamba": _dimamba, "unet": _unet}


def _backbone(cfg: DictConfig, vocab_size: int, causal: bool, num_classes: Optional[int], conditioning: str):
    """The network of `cfg.model` (the one place a config picks a backbone)."""
    build = BACKBONES.get(cfg.model.name, _dit)
    return build(cfg.model, cfg.data, vocab_size, causal=causal, num_classes=num_classes,
                 time_conditioning=bool(cfg.time_conditioning), conditioning=conditioning)


def build_language_model(cfg: DictConfig, *, vocab_size: int, mask_id: int, bos_id: int,
                         num_classes: Optional[int] | str = "from data", conditioning: Optional[str] = None,
                         **_ids) -> LanguageModel:
    """AR for parameterization=ar, otherwise a diffusion model over the configured process.

    num_classes: the label classes of a conditional model (default: the dataset's, when data.label_col
    is set);
    conditioning: how time and labels join in the DiT (default: "silu_each" for model=hf_dit,
    "silu_sum" otherwise; see discdiff.models.dit)."""
    t = cfg.training
    if num_classes == "from data":
        num_classes = label_classes(cfg)
    conditioning = conditioning or cfg.model.get("conditioning") or "silu_sum"
    common = {"loss_on_pad": bool(t.loss_on_pad), "num_classes": num_classes, "head_chunk_mib": t.head_chunk_mib}
    backbone = partial(_backbone, cfg, vocab_size, num_classes=num_classes, conditioning=conditioning)
    if cfg.parameterization == "ar":
        return AutoregressiveLM(backbone(causal=True), cfg.data.length, bos_id, **common)
    subs = cfg.parameterization == "subs"
    process = build_process(cfg.diffusion, vocab_size, mask_id, carry_over=subs,
                            subs_masking=subs or bool(cfg.subs_masking))
    noise = OmegaConf.to_container(cfg.noise)
    schedule = get_schedule(noise.pop("name"), **noise)
    return DiffusionLM(backbone(causal=False), process, schedule, cfg.data.length, relaxation=_relaxation(t, process),
                       T=cfg.T, time_conditioning=bool(cfg.time_conditioning),
                       antithetic_sampling=bool(t.antithetic_sampling),
                       importance_sampling=bool(t.importance_sampling),
                       change_of_variables=bool(t.change_of_variables), sampling_eps=t.sampling_eps,
                       zero_recon_loss=bool(cfg.zero_recon_loss), use_simple_ce_loss=bool(t.use_simple_ce_loss),
                       **common)


def _relaxation(training: DictConfig, process) -> Optional[Relaxation]:
    """DUO's curriculum input when training.curriculum.steps > 0 (the window and tau of that section)."""
    c = training.curriculum
    if not c.steps:
        return None
    return Relaxation(DualitySchedule(process.vocab_size, float(c.log_snr_min), float(c.log_snr_max)), float(c.tau))


def classifier_vocab_size(kind: str, diffusion: str, tokenizer) -> int:
    """Ids a classifier of `kind` (classifier.kind) reads for a generator of the `diffusion`
    process: a noisy one the x_t of that process and a head the generator's own input
    (`model_vocab_size`), the others clean data (`data_vocab_size`; one clean classifier serves
    MDLM and UDLM samples of images alike)."""
    if kind in ("noisy", "head"):
        return model_vocab_size(diffusion, tokenizer)
    return data_vocab_size(tokenizer)


def check_classifier(cfg: DictConfig) -> None:
    """Refuse a classifier that cannot be trained: no labels, or noise of an AR model."""
    if cfg.data.label_col is None:
        raise ValueError("a classifier needs labels: set data.label_col (one of the dataset's label columns)")
    if cfg.classifier.kind == "noisy" and cfg.parameterization == "ar":
        raise ValueError(NOISY_NEEDS_DIFFUSION)


def build_classifier(cfg: DictConfig, vocab: dict, generator: Optional[LanguageModel] = None):
    """(classifier, corrupt) for `discdiff train-classifier`: the network of `classifier.kind`, and
    `corrupt(x0) -> (x, sigma)`, the input it is trained on (see training.classifier_module)."""
    c, kind = cfg.classifier, cfg.classifier.kind
    if kind not in CLASSIFIER_KINDS:
        raise ValueError(f"unknown classifier.kind '{kind}'; allowed: {', '.join(CLASSIFIER_KINDS)}")
    check_classifier(cfg)
    if kind == "head":
        if generator is None:
            raise ValueError("classifier.kind=head needs classifier.generator=RUN_DIR (a trained generator)")
        return HiddenStateClassifier(generator, label_classes(cfg)), generator.corrupt
    encoder = build_encoder(c.model, vocab["vocab_size"], cfg.data.length, time_conditioning=kind == "noisy",
                            causal=kind == "prefix", dropout=c.dropout, image_shape=get_spec(cfg.data.name).image_shape)
    classifier = SequenceClassifier(encoder, label_classes(cfg), pooling=c.pooling)
    if kind != "noisy":
        return classifier, _clean
    process, schedule = build_noising(cfg, vocab["vocab_size"], vocab["mask_id"])
    t = cfg.training
    return classifier, partial(objectives.corrupt, process, schedule, antithetic=bool(t.antithetic_sampling),
                               eps=t.sampling_eps)


def _clean(x0):
    return x0, None


def build_noising(cfg: DictConfig, vocab_size: int, mask_id: int):
    """(process, schedule) of the generator family a noisy classifier is trained for; refuses AR."""
    if cfg.parameterization == "ar":
        raise ValueError(NOISY_NEEDS_DIFFUSION)
    noise = OmegaConf.to_container(cfg.noise)
    return build_process(cfg.diffusion, vocab_size, mask_id), get_schedule(noise.pop("name"), **noise)
