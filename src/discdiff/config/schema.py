"""The configuration schema: what every key may be and what it means.

The packaged YAML files (`discdiff/configs`) hold the default values; the models below hold each
key's type, range or allowed values and meaning, and the rules that join keys (a family's knobs,
a model's head count, a batch plan). `check(plain_dict)` runs them all once, when a configuration
is composed, for every command; the first violation becomes one line naming the key, the value
and what is allowed. `discdiff config --help` and docs/configuration.md's key table are generated from these
models (`discdiff.config.reference`), so the documentation cannot drift from the checks.

A config group whose options take different keys (noise, logger, guidance) is a union of one model
per option, told apart by its `name`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from ..data.registry import DataConfig, get_spec
from ..lr_schedules import LR_SCHEDULES
from ..models import MODEL_SIZES
from ..models.classifier import CLASSIFIER_KINDS, ENCODERS, POOLINGS
from ..models.dimamba import DIMAMBA_SIZES
from ..models.layers import CONDITIONINGS
from ..models.unet import UNET_SIZES, check_unet
from ..step_schedules import step_schedule
from ..validation import (
    ExistingFile,
    ExistingPath,
    FiniteFloat,
    HubSource,
    NonNegativeFloat,
    NonNegativeInt,
    OpenUnitFloat,
    PositiveFloat,
    PositiveInt,
    Probability,
    first_problem,
)

SizeName = Literal[tuple(MODEL_SIZES)]


class ConfigError(ValueError):
    """A configuration the user asked for cannot be built; the message is one line."""


class Section(BaseModel):
    """A block of keys; keys it does not declare are refused."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- groups


class DiTSection(Section):
    name: SizeName = Field(description="DiT size (micro 4x128, tiny 8x512, small 12x768, medium 24x1024); "
                                       "the keys below override single dimensions of it")
    hidden_size: Optional[PositiveInt] = Field(description="width D of the residual stream (null: the size's)")
    n_blocks: Optional[PositiveInt] = Field(description="number of transformer blocks (null: the size's)")
    n_heads: Optional[PositiveInt] = Field(description="attention heads; must divide hidden_size (null: the size's)")
    cond_dim: Optional[PositiveInt] = Field(description="width of the time / label conditioning vector (null: the size's)")
    dropout: Probability = Field(description="residual dropout after attention and MLP")

    def dims(self) -> dict[str, int]:
        """The named size with this section's overrides applied."""
        overrides = {k: getattr(self, k) for k in ("hidden_size", "n_blocks", "n_heads", "cond_dim")}
        return {**MODEL_SIZES[self.name], **{k: v for k, v in overrides.items() if v is not None}}

    @model_validator(mode="after")
    def _heads_fit(self):
        _check_heads(self.dims())
        return self


def _check_heads(d: dict) -> None:
    if d.get("hidden_size") and d.get("n_heads") and (d["hidden_size"] % d["n_heads"] or
                                                      (d["hidden_size"] // d["n_heads"]) % 2):
        raise ValueError(f"model.hidden_size={d['hidden_size']} must split into model.n_heads={d['n_heads']} "
                         "heads of an even size (rotary embedding); e.g. hidden_size=128 n_heads=4")


class PretrainedDiTSection(Section):
    name: Literal["hf_dit"] = Field(description="a DiT in the published UDLM / MDLM HuggingFace layout, started "
                                                "from model.pretrained (fine-tuning)")
    pretrained: HubSource = Field(description="hub id (org/name) or local folder of the starting checkpoint")
    hidden_size: Optional[PositiveInt] = Field(description="null: read from the checkpoint's config.json")
    n_blocks: Optional[PositiveInt] = Field(description="null: read from the checkpoint's config.json")
    n_heads: Optional[PositiveInt] = Field(description="null: read from the checkpoint's config.json")
    cond_dim: Optional[PositiveInt] = Field(description="null: read from the checkpoint's config.json")
    dropout: Probability = Field(description="residual dropout after attention and MLP")
    conditioning: Literal[CONDITIONINGS] = Field(description="silu_each: silu(time) + silu(label), as published; "
                                                             "silu_sum: silu(time + label), as discdiff's DiT")

    def dims(self) -> dict:
        return {k: getattr(self, k) for k in ("hidden_size", "n_blocks", "n_heads", "cond_dim")}

    @model_validator(mode="after")
    def _heads_fit(self):
        _check_heads(self.dims())
        return self


class DiMambaSection(Section):
    name: Literal["dimamba"] = Field(description="bidirectional Mamba (causal for AR) in plain PyTorch, linear "
                                                 "in the length (long DNA sequences); mamba-ssm's kernel when "
                                                 "installed on a GPU")
    size: Literal[tuple(DIMAMBA_SIZES)] = Field(description="width and depth preset (as the DiT's)")
    hidden_size: Optional[PositiveInt] = Field(description="null: the size's")
    n_blocks: Optional[PositiveInt] = Field(description="null: the size's")
    cond_dim: Optional[PositiveInt] = Field(description="null: the size's")
    d_state: PositiveInt = Field(description="SSM state size N per channel")
    d_conv: PositiveInt = Field(description="width of the causal depthwise convolution")
    expand: PositiveInt = Field(description="inner width = expand x hidden_size")
    chunk_size: PositiveInt = Field(description="positions per chunk of the parallel scan (memory ~ chunk^2)")
    dropout: Probability = Field(description="residual dropout after each mixer")


class UNetSection(Section):
    name: Literal["unet"] = Field(description="image UNet over pixel tokens (C,H,W order) of an image dataset; "
                                              "diffusion only")
    size: Literal[tuple(UNET_SIZES)] = Field(description="micro (tests), small (CPU demo), cifar10 (the paper's)")
    dropout: Probability = Field(description="dropout in the residual blocks")


ModelSection = Annotated[Union[DiTSection, PretrainedDiTSection, DiMambaSection, UNetSection],
                         Field(discriminator="name")]


def _option(base: type[Section], name: str, meaning: str, **keys) -> type[Section]:
    """One option of a config group whose options take different keys: `base`'s keys, `name`
    fixed to this option (`meaning`: what it is) and its own `keys` ((type, Field) each)."""
    return create_model(f"{base.__name__.strip('_')}_{name}", __base__=base,
                        name=(Literal[name], Field(description=meaning)), **keys)


class _EpsNoise(Section):
    eps: OpenUnitFloat = Field(description="alpha_1 = eps: the share of clean tokens left at t = 1")


class _SigmaRangeNoise(Section):
    sigma_min: PositiveFloat = Field(description="total noise sigma at t = 0")
    sigma_max: PositiveFloat = Field(description="total noise sigma at t = 1; > sigma_min")

    @model_validator(mode="after")
    def _increasing(self):
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"noise.sigma_min={self.sigma_min} must be below noise.sigma_max={self.sigma_max}")
        return self


Noise = Annotated[Union[
    _option(_EpsNoise, "loglinear", "alpha_t = 1 - (1 - eps) t (MDLM / UDLM default)"),
    _option(_EpsNoise, "cosine", "alpha_t = eps + (1 - eps) cos(pi t / 2)"),
    _option(_EpsNoise, "cosine_squared", "alpha_t = eps + (1 - eps) cos^2(pi t / 2)"),
    _option(_EpsNoise, "polynomial", "alpha_t = 1 - (1 - eps) t^exponent",
            exponent=(PositiveFloat, Field(description="power of t"))),
    _option(_SigmaRangeNoise, "linear", "sigma_t linear from sigma_min to sigma_max, alpha_t = exp(-sigma_t)"),
    _option(_SigmaRangeNoise, "geometric", "sigma_t = sigma_min^(1-t) sigma_max^t, alpha_t = exp(-sigma_t)"),
], Field(discriminator="name")]


class LRScheduler(Section):
    name: Literal[tuple(LR_SCHEDULES)] = Field(description="constant_warmup: linear warmup, then constant; "
                                                           "cosine_decay_warmup: then cosine decay to min_lr "
                                                           "at trainer.max_steps")
    warmup_steps: NonNegativeInt = Field(description="optimizer steps of linear warmup")
    min_lr: NonNegativeFloat = Field(description="final learning rate of the cosine decay; <= optim.lr")


class _Logger(Section):
    project: str = Field(description="project name (W&B); kept for the other loggers")


Logger = Annotated[Union[
    _option(_Logger, "csv", "CSV metrics in run_dir/logs/version_N/metrics.csv"),
    _option(_Logger, "tensorboard", "TensorBoard events in run_dir/logs (the tensorboard extra)"),
    _option(_Logger, "wandb", "Weights & Biases (the wandb extra); offline when its server is unreachable",
            entity=(Optional[str], Field(description="W&B entity (team or user); null: your default")),
            offline=(bool, Field(description="log offline (sync later with `wandb sync`)"))),
], Field(discriminator="name")]


class _Guidance(Section):
    gamma: FiniteFloat = Field(description="guidance strength: 0 = unguided, larger = stronger")
    condition: NonNegativeInt = Field(description="target class (1 = property above its percentile)")


class _ClassifierGuidance(_Guidance):
    classifier: Optional[ExistingPath] = Field(description="run folder or .ckpt of discdiff train-classifier "
                                                           "(the kind the method needs); required to sample")


def _hidden_state_steps(method: str, per: str, kl_of: str) -> dict:
    """The keys of a method that takes gradient steps on a generator's hidden states (NOS, PPLM)."""
    return {f"num_{method}_steps": (PositiveInt, Field(description=f"gradient steps per {per}")),
            f"{method}_step_size": (PositiveFloat, Field(description="each step's length relative to the hidden "
                                                                     "states' size")),
            f"{method}_stability_coef": (NonNegativeFloat, Field(description=f"weight of KL(perturbed || model) "
                                                                             f"{kl_of}"))}


GuidanceOptions = Annotated[Union[
    _option(_Guidance, "cfg", "D-CFG: p(.|y)^gamma p(.)^(1-gamma); a label-conditional model, any family"),
    _option(_ClassifierGuidance, "cbg", "D-CBG: p(x_s|x_t) p(y|x_s)^gamma with a noisy classifier (MDLM, UDLM)",
            use_approx=(bool, Field(description="first-order Taylor scores (one classifier gradient per step)"))),
    _option(_ClassifierGuidance, "nos", "NOS: gradient steps on the denoiser's hidden states (MDLM, UDLM)",
            **_hidden_state_steps("nos", "sampling step", "per position")),
    _option(_ClassifierGuidance, "fudge", "FUDGE: top-k next tokens reweighted by a prefix classifier (AR)",
            topk=(PositiveInt, Field(description="candidate tokens scored per step"))),
    _option(_ClassifierGuidance, "pplm", "PPLM: gradient steps on the AR model's last hidden state (AR)",
            **_hidden_state_steps("pplm", "token", "of the next token")),
], Field(discriminator="name")]

# --------------------------------------------------------------------------- sections


class TrainingGuidance(Section):
    cond_dropout: Probability = Field(description="probability of replacing the label by the null class in "
                                                  "training (D-CFG); > 0 needs data.label_col")


class Curriculum(Section):
    steps: NonNegativeInt = Field(description="optimizer steps trained on DUO's Gaussian relaxation before plain "
                                              "training (algo=udlm); 0 = no curriculum")
    log_snr_min: float = Field(description="the window of Gaussian log-SNRs g the curriculum trains on (DUO's "
                                           "gamma_min; low g = little noise)")
    log_snr_max: float = Field(description="the window's upper end (DUO's gamma_max)")
    tau: PositiveFloat = Field(description="temperature of the relaxation softmax(w / tau) the network reads")

    @model_validator(mode="after")
    def _window(self):
        return _increasing_window(self, "training.curriculum")


def _increasing_window(section, name: str):
    """The section (log_snr_min < log_snr_max), or a one-line error naming its keys."""
    if not section.log_snr_min < section.log_snr_max:
        raise ValueError(f"{name}.log_snr_min={section.log_snr_min} must be below {name}.log_snr_max="
                         f"{section.log_snr_max}")
    return section


class Training(Section):
    ema: Probability = Field(description="decay of the moving average of the weights used for validation and "
                                         "sampling; 0 disables it")
    antithetic_sampling: bool = Field(description="spread the batch's times evenly over [eps, 1] (lower variance)")
    importance_sampling: bool = Field(description="t drawn with density proportional to d/dt log(1 - alpha_t), "
                                                  "reweighted (unbiased, flatter weights)")
    change_of_variables: bool = Field(description="importance sampling, and the network reads that uniform "
                                                  "coordinate instead of sigma")
    sampling_eps: OpenUnitFloat = Field(description="training times t ~ U[eps, 1]")
    use_simple_ce_loss: bool = Field(description="plain cross-entropy on x0 instead of the NELBO")
    loss_on_pad: bool = Field(description="train on padding tokens too (false leaves them out of the loss)")
    head_chunk_mib: Optional[NonNegativeFloat] = Field(
        description="the loss runs the output head over chunks of positions, each chunk's fp32 logits "
                    "at most this many MiB (no (B, L, V) tensor in full); null: 256 on a GPU, 32 on the CPU; "
                    "0: all positions at once")
    guidance: TrainingGuidance
    curriculum: Curriculum


class ClassifierSection(Section):
    kind: Literal[CLASSIFIER_KINDS] = Field(description="noisy: x_t of algo / noise (D-CBG) | clean: x0 "
                                                        "(evaluation) | prefix: every prefix of x0 (FUDGE) | head: "
                                                        "on a frozen generator's hidden states (NOS, PPLM)")
    generator: Optional[ExistingPath] = Field(description="kind=head: the generator's run folder or .ckpt (its "
                                                          "EMA weights are used)")
    model: Literal[ENCODERS] = Field(description="the encoder (not for kind=head): a DiT size, dimamba_<size> "
                                                 "(a DiMamba, for long DNA sequences) or unet_<size> (a UNet, "
                                                 "for images)")
    pooling: Literal[POOLINGS] = Field(description="pooling of the last hidden states over positions (noisy, clean)")
    dropout: Probability = Field(description="residual dropout of the encoder")

    @model_validator(mode="after")
    def _generator_iff_head(self):
        if (self.kind == "head") != (self.generator is not None):
            raise ValueError("classifier.generator=RUN_DIR goes with classifier.kind=head, and only with it")
        return self


class Loader(Section):
    global_batch_size: PositiveInt = Field(description="sequences per optimizer step, over all devices "
                                                       "(reached by gradient accumulation)")
    batch_size: Optional[PositiveInt] = Field(description="per-device micro-batch; null = global / devices")
    eval_batch_size: Optional[PositiveInt] = Field(description="validation batch; null = the micro-batch")
    num_workers: NonNegativeInt = Field(description="data loader worker processes")


class Optim(Section):
    lr: PositiveFloat = Field(description="peak learning rate of AdamW")
    weight_decay: NonNegativeFloat = Field(description="AdamW weight decay")
    beta1: Probability = Field(description="AdamW beta1")
    beta2: Probability = Field(description="AdamW beta2")
    eps: PositiveFloat = Field(description="AdamW epsilon")


class Trainer(Section):
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(description="where to train")
    devices: Union[PositiveInt, Annotated[list[NonNegativeInt], Field(min_length=1)], Literal["auto"]] = Field(
        description="devices per node: a count, a list of ids or auto")
    num_nodes: PositiveInt = Field(description="machines (multi-node DDP)")
    strategy: Literal["auto", "ddp", "fsdp"] = Field(description="Lightning strategy")
    precision: Literal["auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true"] = Field(
        description="auto: bf16 autocast on GPU, fp32 on CPU")
    max_steps: PositiveInt = Field(description="optimizer steps of the run (the most, with max_minutes)")
    max_minutes: Optional[PositiveFloat] = Field(description="size the run to this many minutes of training: the "
                                                             "steps that fit (at most max_steps) are planned "
                                                             "from the speed measured during the LR warm-up, "
                                                             "and the LR schedule spans them; null = max_steps")
    gradient_clip_val: NonNegativeFloat = Field(description="gradient-norm clipping; 0 disables it")
    val_check_interval: PositiveInt = Field(description="optimizer steps between validations")
    limit_val_batches: Union[Annotated[int, Field(strict=True, ge=1)], Annotated[float, Field(gt=0, le=1)]] = Field(
        description="validation batches: a count, or a fraction of the split")
    log_every_n_steps: PositiveInt = Field(description="optimizer steps between logged training metrics")
    compile: bool = Field(description="torch.compile the backbone")
    progress_bar: bool = Field(description="show Lightning's progress bar")
    progress_every: NonNegativeInt = Field(description="print a line (step, loss, steps/s, time left) every N "
                                                       "optimizer steps; 0 = never")

    @model_validator(mode="before")
    @classmethod
    def _precision_as_text(cls, data):
        if isinstance(data, dict) and isinstance(data.get("precision"), int):  # trainer.precision=32 parses as an int
            data = {**data, "precision": str(data["precision"])}
        return data


class Checkpointing(Section):
    every_n_steps: PositiveInt = Field(description="optimizer steps between writes of checkpoints/last.ckpt")
    resume: bool = Field(description="continue from run_dir's newest readable checkpoint when there is one")


class Sampling(Section):
    steps: PositiveInt = Field(description="denoising steps (diffusion); AR models decode one token per step")
    num_samples: PositiveInt = Field(description="sequences to draw")
    batch_size: PositiveInt = Field(description="sequences drawn at once")
    eps: OpenUnitFloat = Field(description="last time of the grid from 1 to eps")
    method: Literal["ancestral", "remdm", "psi"] = Field(
        description="diffusion steps: ancestral (the posterior), remdm (remasking, ReMDM) or psi (predictor-"
                    "corrector mix, Duo++); every guidance method composes with each")
    kappa: Annotated[float, Field(ge=0, le=1)] = Field(
        description="psi: weight of the posterior in a corrected step (1 = ancestral) on [t_off, t_on]")
    remdm_schedule: Literal["cap", "rescale", "conf", "loop"] = Field(
        description="remdm: sigma_t = min(eta, sigma_max) (cap), eta sigma_max (rescale), w sigma_max per token with w "
                    "the softmax of minus the decoded tokens' probabilities (conf), or eta on a plateau alpha = "
                    "alpha_on over [t_off, t_on] (loop)")
    eta: NonNegativeFloat = Field(description="remdm: the remasking probability parameter of remdm_schedule (cap, "
                                              "rescale, loop; conf has none)")
    t_on: Optional[OpenUnitFloat] = Field(description="start (in t, from 1 down) of the corrector's window; null = "
                                                      "the method's default (psi 0.5, remdm loop 0.55)")
    t_off: Optional[OpenUnitFloat] = Field(description="end of the corrector's window; null = the method's default "
                                                       "(psi 0.1, remdm loop 0.05)")
    alpha_on: OpenUnitFloat = Field(description="remdm loop: the share of clean tokens held on the plateau")
    top_p: Annotated[float, Field(gt=0, le=1)] = Field(
        description="nucleus of every prediction x_theta (diffusion) or next-token distribution (AR); 1 = off")
    greedy_last: bool = Field(description="take the most likely token at the last step only (diffusion)")
    block_length: Optional[PositiveInt] = Field(
        description="semi-autoregressive blocks (diffusion): each block after the first model.length tokens "
                    "is sampled with the previous model.length - block_length tokens as context")
    length: Optional[PositiveInt] = Field(description="tokens per sample; null = model.length; more needs "
                                                      "block_length, and length - model.length a multiple of it")
    argmax: bool = Field(description="take the most likely token of each step instead of sampling it")
    use_cache: bool = Field(description="reuse the denoiser's output while x_t is unchanged (absorbing models "
                                        "without time conditioning); KV cache for AR")
    float64: Optional[bool] = Field(description="posterior and Gumbel noise in float64; null = float64 for "
                                                "vocabularies of 1,000 tokens or more (word pieces), float32 "
                                                "below")
    compile: bool = Field(description="torch.compile the guided steps' reductions over the vocabulary (D-CFG "
                                      "of diffusion models; one compilation per shape and gamma, then fewer "
                                      "passes over (B, L, V))")
    label: Optional[NonNegativeInt] = Field(description="class to condition on (conditional models); null = the "
                                                        "null class")
    output: Optional[str] = Field(description="samples file; null = run_dir/samples.json")

    @model_validator(mode="after")
    def _method_keys(self):
        step_schedule(self.method, kappa=self.kappa, eta=self.eta, remdm_schedule=self.remdm_schedule, t_on=self.t_on,
                      t_off=self.t_off, alpha_on=self.alpha_on)  # refuses a window with t_off >= t_on
        return self


class Eval(Section):
    disable_ema: bool = Field(description="evaluate the live weights instead of the EMA")
    num_time_samples: PositiveInt = Field(description="NELBO draws of t per sequence in eval ppl")
    split: Literal["valid", "test"] = Field(description="eval ppl: the split (test falls back to valid where the "
                                                        "dataset has no test split)")
    include_padding: bool = Field(description="count padding positions in eval ppl and the validation metrics "
                                              "(the paper leaves them out)")
    max_batches: Optional[PositiveInt] = Field(description="limit eval ppl to this many validation batches")
    samples: Optional[ExistingFile] = Field(description="eval qm9 / gen-ppl / species / images: a samples JSON; null "
                                                        "= sample now (species, images: toward each class of "
                                                        "study.conditions, null = every class)")
    classifier: Optional[HubSource] = Field(description="the evaluation classifier of eval species / images and the "
                                                        "guidance study: a clean classifier's run folder, or a "
                                                        "HuggingFace sequence-classification model (folder or hub "
                                                        "id) that reads the decoded samples; its verdicts give "
                                                        "target_accuracy and the oracle_* scores; null = none")
    inception: bool = Field(description="eval images and the image study: FID / IS with the standard Inception-v3 "
                                        "(weights in eval.inception_dir, refused when missing); false = the offline "
                                        "metrics only (fid_clf and the class scores of eval.classifier)")
    inception_dir: Optional[str] = Field(description="folder of inception-2015-12-05.pt (downloaded there when absent "
                                                     "and reachable); null = <data cache>/inception (the real "
                                                     "statistics are cached in <data cache>/image_stats)")
    judge: str = Field(description="eval gen-ppl and the text study: the causal LM judging fluency: a HuggingFace "
                                   "name or folder (gpt2-large as upstream), a GGUF file, or smollm2 (offline); "
                                   "none: the text study leaves the fluency columns out")
    judge_batch_size: PositiveInt = Field(description="samples per batch of the judge")
    mauve: bool = Field(description="eval gen-ppl and the text study: MAUVE between the samples and as many real "
                                    "texts of the validation split (of the target classes where the data has "
                                    "labels), in the judge's features")
    discriminator: Literal["dit", "dimamba", "none"] = Field(
        description="eval species and the species study: the network of the paper's real-vs-generated "
                    "discriminator (auroc: 2 blocks of width 128, 5 epochs from scratch; dit or dimamba); none "
                    "= leave auroc out (auroc_kmer, the 6-mer logistic regression, is always reported)")
    output_dir: Optional[str] = Field(description="null = run_dir/eval")


class Study(Section):
    gammas: Annotated[list[FiniteFloat], Field(min_length=1)] = Field(description="guidance strengths of the sweep")
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] = Field(description="sampling seeds of the sweep")
    steps: Optional[Annotated[list[PositiveInt], Field(min_length=1)]] = Field(
        description="sampling steps of the sweep (one row each; the study then also plots its domain's quality "
                    "against steps); null = [sampling.steps]")
    name: Optional[str] = Field(description="the model's name in the table and plot; null = the run folder's name")
    conditions: Optional[list[NonNegativeInt]] = Field(description="classes to steer toward, each in turn with "
                                                                   "sampling.num_samples samples (one row per "
                                                                   "setting); null = [guidance.condition] (eval "
                                                                   "species / images: every class; images: [] = "
                                                                   "unguided samples)")
    property: str = Field(description="QM9: the property of the Pareto plot's y axis (qed or ring_count)")
    output_dir: Optional[str] = Field(description="null = run_dir/guidance_study (rows of other runs are kept)")


class Export(Section):
    out: Optional[str] = Field(description="discdiff export: the HuggingFace model folder to write (also out=)")
    push_to_hub: Optional[str] = Field(description="discdiff export: upload the folder to this hub repository "
                                                   "(org/name; also push_to_hub=)")


class Distil(Section):
    teacher: Optional[ExistingPath] = Field(description="discdiff distil: the UDLM run folder or .ckpt to distil (its "
                                                        "EMA weights start the student and the first teacher)")
    rounds: PositiveInt = Field(description="rounds of discrete consistency distillation; the teacher is the "
                                            "student's copy at the start of each, and delta doubles")
    steps_per_round: PositiveInt = Field(description="optimizer steps per round (trainer.max_steps is "
                                                     "rounds x steps_per_round)")
    delta: OpenUnitFloat = Field(description="the first round's step in t along the Gaussian trajectory (DUO: 1/512)")
    divergence: Literal["kl-bwd", "kl-fwd"] = Field(description="kl-bwd: KL(student || teacher) (DUO); kl-fwd: "
                                                                "KL(teacher || student)")
    log_snr_min: float = Field(description="the Gaussian log-SNR at t = 0 of the trajectory's time (DUO: -4)")
    log_snr_max: float = Field(description="the log-SNR at t = 1 (DUO: -1, for GPT-2's 50,257 tokens)")
    cfg_gamma: Optional[NonNegativeFloat] = Field(description="null: distil the teacher as it is; a number: in "
                                                  "the first round a label's target is the teacher's D-CFG "
                                                  "prediction at this gamma (null labels keep the unguided one), so "
                                                  "the student's plain conditional sampling is the guided teacher's")

    @model_validator(mode="after")
    def _window(self):
        return _increasing_window(self, "distil")


# ------------------------------------------------------------------------------ root


class RunConfig(Section):
    seed: NonNegativeInt = Field(description="seed of initialisation, data order, noise and sampling")
    run_dir: str = Field(description="folder of the run: config, tokenizer, checkpoints, logs, samples")
    checkpoint: Optional[HubSource] = Field(description="sample / eval / export: a .ckpt file, a HuggingFace model "
                                                        "folder or hub id (org/name); null = run_dir's best, else last")
    diffusion: Literal["absorbing_state", "uniform"] = Field(description="forward process (set by algo)")
    parameterization: Literal["ar", "subs", "d3pm"] = Field(description="ar: next-token; subs: MDLM's "
                                                                        "substitution; d3pm: softmax over x0")
    T: NonNegativeInt = Field(description="0: continuous time; N > 0: discrete time with N steps")
    time_conditioning: bool = Field(description="the denoiser reads the noise level")
    zero_recon_loss: bool = Field(description="drop the reconstruction term of the NELBO")
    subs_masking: bool = Field(description="d3pm on absorbing_state: give the mask token zero probability")
    training: Training
    classifier: ClassifierSection
    loader: Loader
    optim: Optim
    trainer: Trainer
    checkpointing: Checkpointing
    sampling: Sampling
    eval: Eval
    study: Study
    export: Export
    distil: Distil
    model: ModelSection
    data: DataConfig
    noise: Noise
    lr_scheduler: LRScheduler
    logger: Logger
    guidance: Optional[GuidanceOptions] = Field(None, description="a guidance method (sample / eval); null = unguided")

    @model_validator(mode="after")
    def _family(self):
        p, d, T = self.parameterization, self.diffusion, self.T
        if p == "ar" and T:
            raise ValueError(f"T={T} does not apply to parameterization=ar; use T=0")
        if p == "ar" and self.time_conditioning:
            raise ValueError("time_conditioning=true does not apply to parameterization=ar")
        if p == "subs" and d != "absorbing_state":
            raise ValueError(f"parameterization=subs needs diffusion=absorbing_state, got diffusion={d}; "
                             "use parameterization=d3pm for uniform")
        if p == "d3pm" and d == "absorbing_state" and not T:
            raise ValueError("parameterization=d3pm with diffusion=absorbing_state needs discrete time (T>0); "
                             "use parameterization=subs for continuous time")
        return self

    @model_validator(mode="after")
    def _backbone_fits(self):
        shape = get_spec(self.data.name).image_shape
        if shape is not None and self.parameterization == "ar":
            raise ValueError(f"data={self.data.name} holds images, whose pixel tokens have no [BOS] to start an AR "
                             "model from; use algo=mdlm or algo=udlm")
        if self.classifier.model.startswith("unet_"):
            check_unet(f"classifier.model={self.classifier.model}", shape, self.classifier.kind == "prefix",
                       dataset=f"data={self.data.name}")
        if self.model.name == "unet":
            check_unet("model=unet", shape, self.parameterization == "ar", dataset=f"data={self.data.name}")
        return self

    @model_validator(mode="after")
    def _training(self):
        if self.training.curriculum.steps and (self.diffusion != "uniform" or self.T):
            raise ValueError("training.curriculum.steps > 0 (DUO's Gaussian curriculum) needs uniform noise in "
                             "continuous time: algo=udlm")
        if self.training.guidance.cond_dropout > 0 and self.data.label_col is None:
            raise ValueError("training.guidance.cond_dropout > 0 needs a conditional model: set data.label_col")
        if self.distil.cfg_gamma is not None and self.data.label_col is None:
            raise ValueError(f"distil.cfg_gamma={self.distil.cfg_gamma} guides by a label: set data.label_col to the "
                             "teacher's, or distil.cfg_gamma=null")
        if self.lr_scheduler.min_lr > self.optim.lr:
            raise ValueError(f"lr_scheduler.min_lr={self.lr_scheduler.min_lr} is above optim.lr={self.optim.lr}")
        batch_plan(self.loader, self.trainer)
        return self


def world_size(trainer) -> int:
    """Training processes of a `trainer` section: devices per node (a count, a list, or 'auto' = 1)
    x nodes."""
    devices = trainer.devices
    per_node = devices if isinstance(devices, int) else 1 if isinstance(devices, str) else len(devices)
    return max(per_node, 1) * trainer.num_nodes


def batch_plan(loader, trainer) -> tuple[int, int]:
    """(per-device micro-batch, gradient accumulation steps) that reach loader.global_batch_size
    over the trainer's processes (the `loader` and `trainer` sections)."""
    world, total = world_size(trainer), loader.global_batch_size
    micro = loader.batch_size or total // world
    if micro < 1 or total % (micro * world):
        raise ConfigError(f"loader.global_batch_size={total} is not a multiple of "
                          f"loader.batch_size={micro} x {world} device(s)")
    return micro, total // (micro * world)


def check(plain: dict) -> dict:
    """Validate a composed configuration (plain containers); return it with every value in its
    declared type (e.g. trainer.precision=32 -> '32'). Raises ConfigError with one line."""
    try:
        return RunConfig.model_validate(plain).model_dump()
    except ValidationError as err:
        raise ConfigError(first_problem(err, RunConfig)) from None
