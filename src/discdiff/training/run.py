"""`discdiff train`, `discdiff train-classifier` and `discdiff distil`: the run folder, data,
Lightning trainer, checkpoints and resumption.

A run folder holds config.yaml, tokenizer/, checkpoints/{last,best}.ckpt and logs/. Starting
`discdiff train` on a folder that has checkpoints/last.ckpt continues that run (same data order,
same random stream), so a preempted job restarted with the same command picks up where it stopped.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from .. import checkpoints
from ..config import ConfigError, batch_plan, restore, world_size
from ..data import build_datasets
from ..factory import PRETRAINED, algo_name, check_classifier, classifier_vocab_size, vocab_info
from ..hub import format as hf_format
from ..lm import model_vocab_size
from ..files import write_text
from ..loading import Pipeline, load
from .budget import TimeBudget
from .checkpoint_io import AtomicCheckpointIO
from .classifier_module import LitClassifier
from .distil_module import LitDistillation
from .module import LitLanguageModel
from .progress import ProgressLines
from .sampler import ResumableSampler, ValidationSampler


class DataModule(L.LightningDataModule):
    """Train/validation loaders with a resumable sampler sized for this rank."""

    def __init__(self, cfg: DictConfig, train_set, valid_set):
        super().__init__()
        self.cfg, self.train_set, self.valid_set = cfg, train_set, valid_set
        self.micro_batch, _ = batch_plan(cfg.loader, cfg.trainer)
        self.train_sampler = None

    def _loader(self, dataset, sampler, batch_size):
        workers = self.cfg.loader.num_workers
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=torch.cuda.is_available(), drop_last=True,
                          persistent_workers=workers > 0)

    def train_dataloader(self):
        t = self.trainer
        self.train_sampler = ResumableSampler(len(self.train_set), seed=self.cfg.seed, rank=t.global_rank,
                                              world_size=t.world_size, batch_size=self.micro_batch)
        return self._loader(self.train_set, self.train_sampler, self.micro_batch)

    def val_dataloader(self):
        t = self.trainer
        sampler = ValidationSampler(len(self.valid_set), seed=self.cfg.seed, rank=t.global_rank,
                                    world_size=t.world_size)
        batch = self.cfg.loader.eval_batch_size or self.micro_batch
        return self._loader(self.valid_set, sampler, min(batch, len(sampler)))


def calibration_steps(cfg) -> int:
    """Steps a time budget measures before planning: within the LR warm-up, at most 200."""
    return max(10, min(200, cfg.lr_scheduler.warmup_steps))


def _precision(cfg) -> str:
    if str(cfg.trainer.precision) != "auto":
        return str(cfg.trainer.precision)
    return "bf16-mixed" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "32-true"


def _loggers(cfg, run_dir: Path):
    name = cfg.logger.name
    if name == "csv":  # each (re)start writes logs/version_N/metrics.csv: nothing earlier is overwritten
        return [L.pytorch.loggers.CSVLogger(run_dir, name="logs")]
    if name == "tensorboard":
        return [L.pytorch.loggers.TensorBoardLogger(run_dir, name="logs", version="")]
    if name == "wandb":
        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.exists() else None
        offline = bool(cfg.logger.offline) or not _reachable("api.wandb.ai", 443)
        logger = L.pytorch.loggers.WandbLogger(project=cfg.logger.project, entity=cfg.logger.entity,
                                               save_dir=str(run_dir), id=run_id, resume="allow",
                                               offline=offline)
        if run_id is None and int(os.environ.get("RANK", "0")) == 0:
            id_file.write_text(logger.version or "")
        return [logger]
    raise ConfigError(f"unknown logger '{name}'; allowed: csv, tensorboard, wandb")


def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection opens within `timeout` (W&B falls back to offline mode, never blocks)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        print(f"{host} is unreachable: logging to W&B in offline mode (sync later with `wandb sync`)")
        return False


def build_trainer(cfg: DictConfig, run_dir: Path, monitor: str | None = "val/nll", callbacks=()) -> L.Trainer:
    """The Lightning trainer; best.ckpt keeps the lowest `monitor` seen at validation (None: no
    best.ckpt, so loading takes last.ckpt); `callbacks` join the checkpointing (and progress-line)
    ones."""
    _, accumulate = batch_plan(cfg.loader, cfg.trainer)
    every = cfg.checkpointing.every_n_steps
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="min",
                           save_top_k=1, auto_insert_metric_name=False)
    callbacks = [
        ModelCheckpoint(dirpath=run_dir / "checkpoints", every_n_train_steps=every, save_top_k=0, save_last=True),
        *([best] if monitor else []),
        # the budget plans the run before a progress line on the same step reports the time left
        *([TimeBudget(cfg.trainer.max_minutes, calibration_steps(cfg))] if cfg.trainer.max_minutes else []),
        *([ProgressLines(cfg.trainer.progress_every)] if cfg.trainer.progress_every else []),
        *callbacks,
    ]
    t = cfg.trainer
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=_precision(cfg), max_steps=t.max_steps, gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=accumulate, val_check_interval=t.val_check_interval * accumulate,
        check_val_every_n_epoch=None, limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps, callbacks=callbacks, logger=_loggers(cfg, run_dir),
        default_root_dir=run_dir, use_distributed_sampler=False, enable_progress_bar=t.progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()],
    )


DIMS = ("hidden_size", "n_blocks", "n_heads", "cond_dim")

#: Keys that define what a run is: a restarted run must keep them (the others, e.g. trainer.max_steps,
#: devices or logging, may change between restarts).
FIXED_ON_RESUME = ("seed", "diffusion", "parameterization", "T", "time_conditioning", "subs_masking",
                   "zero_recon_loss", "model", "noise", "training", "loader.global_batch_size", "data.name",
                   "data.length", "data.label_col", "data.label_percentile", "data.source", "data.path",
                   "data.split_seed", "data.max_train_examples", "classifier.kind", "classifier.model",
                   "classifier.pooling")


def _prepare_run_dir(cfg: DictConfig, kind: str = "generator") -> tuple[Path, Path | None]:
    """Find where a restarted run continues (the newest readable checkpoint) and refuse one of
    another kind or with other defining keys, before anything is written; then create the run
    folder. Returns (run folder, checkpoint to resume from or None)."""
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir={run_dir} is a file, not a folder")
    point = checkpoints.resume_point(run_dir) if cfg.checkpointing.resume else None
    if point is not None:
        _check_resumable(cfg, point.checkpoint, kind)
        if point.note:
            print(point.note, file=sys.stderr)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.yaml"
    if point is None or not saved.exists():
        write_text(saved, OmegaConf.to_yaml(cfg))
    return run_dir, None if point is None else point.checkpoint.path


def _check_resumable(cfg: DictConfig, found: checkpoints.Checkpoint, kind: str) -> None:
    run_dir = cfg.run_dir
    if found.kind != kind:
        raise ConfigError(f"run_dir={run_dir} holds a {found.kind} run, not a {kind} run; give this run its own run_dir")
    stored = restore(found.config)  # keys added since it was written: defaults
    for key in FIXED_ON_RESUME:
        before, now = _leaves(OmegaConf.select(stored, key), key), _leaves(OmegaConf.select(cfg, key), key)
        for leaf in [*before, *(k for k in now if k not in before)]:
            if before.get(leaf) != now.get(leaf):
                raise ConfigError(f"run_dir={run_dir} was started with {leaf}={before.get(leaf)}; resuming it with "
                                  f"{leaf}={now.get(leaf)} would make it another run: keep the value, or give the "
                                  "new run its own run_dir")


def _leaves(node, key: str) -> dict:
    """{dotted key: value} of a config value or section."""
    if not isinstance(node, DictConfig):
        return {key: node}
    return {leaf: v for k in node for leaf, v in _leaves(node[k], f"{key}.{k}").items()}


def _datasets(cfg: DictConfig, run_dir: Path):
    """(train set, validation set, tokenizer); the run folder keeps the tokenizer it was started with."""
    data_cfg = OmegaConf.to_container(cfg.data)
    tokenizer_dir = run_dir / "tokenizer"
    if tokenizer_dir.exists():
        data_cfg["tokenizer_dir"] = str(tokenizer_dir)
    train_set, valid_set, tokenizer = build_datasets(data_cfg)
    micro, _ = batch_plan(cfg.loader, cfg.trainer)
    world = world_size(cfg.trainer)
    if len(train_set) < micro * world:
        raise ConfigError(f"the training split of {cfg.data.name} has {len(train_set)} sequences, fewer than one "
                          f"batch of {micro} on each of {world} device(s); lower loader.global_batch_size or give "
                          "more data")
    if len(valid_set) < world:
        raise ConfigError(f"the validation split of {cfg.data.name} has {len(valid_set)} sequences, fewer than one "
                          f"per device ({world})")
    if not tokenizer_dir.exists():
        tokenizer.save(tokenizer_dir)
    return train_set, valid_set, tokenizer


def train(cfg: DictConfig) -> Path:
    """Train (or resume) the run described by cfg; returns the run folder."""
    cfg = _with_pretrained_dims(cfg)
    run_dir, resume = _prepare_run_dir(cfg)
    train_set, valid_set, tokenizer = _datasets(cfg, run_dir)
    start = _pretrained_start(cfg, tokenizer) if resume is None else None
    fit(cfg, run_dir, train_set, valid_set, vocab_info(tokenizer, model_vocab_size(cfg.diffusion, tokenizer)),
        resume=resume, start=start)
    return run_dir


def _with_pretrained_dims(cfg: DictConfig) -> DictConfig:
    """model=hf_dit: the dimensions left null, from the run being resumed or else from the
    checkpoint's config.json (whose family and time conditioning must be this run's)."""
    m = cfg.model
    if m.name != PRETRAINED or all(m[k] is not None for k in DIMS):
        return cfg
    point = checkpoints.resume_point(Path(cfg.run_dir)) if cfg.checkpointing.resume else None
    if point is not None:
        found = point.checkpoint.config.get("model", {})
    else:
        found = hf_format.pretrained_dims(m.pretrained)
        family = hf_format.MODEL_TYPES[found["model_type"]]
        if family != algo_name(cfg):
            raise ConfigError(f"model.pretrained={m.pretrained} is a {family.upper()} checkpoint; train it with "
                              f"algo={family}")
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    for key in DIMS:
        if cfg.model[key] is None:
            cfg.model[key] = found.get(key)
    OmegaConf.set_struct(cfg, True)
    return cfg


def _pretrained_start(cfg: DictConfig, tokenizer) -> dict | None:
    """model=hf_dit, fresh run: the starting weights, after checking they read this tokenizer's
    vocabulary (label embeddings of an unconditional run are dropped)."""
    if cfg.model.name != PRETRAINED:
        return None
    found = hf_format.pretrained_dims(cfg.model.pretrained)
    if found["vocab_size"] != tokenizer.vocab_size:
        raise ConfigError(f"model.pretrained={cfg.model.pretrained} reads {found['vocab_size']} tokens, the "
                          f"tokenizer of data={cfg.data.name} has {tokenizer.vocab_size}")
    state = hf_format.pretrained_state(cfg.model.pretrained)
    if cfg.data.label_col is None:
        state = {k: v for k, v in state.items() if not k.startswith("label_embedding")}
    return state


def fit(cfg: DictConfig, run_dir: Path, train_set, valid_set, vocab: dict, *, resume=None, start=None,
        callbacks=(), module_class: type[LitLanguageModel] = LitLanguageModel,
        monitor: str | None = "val/nll") -> L.Trainer:
    """The training every generator run does: seed, build the Lightning module (`module_class`;
    from the backbone weights `start` when given, compiled when trainer.compile), and fit it on the
    datasets from step 0 or from the checkpoint `resume`; returns the trainer. (The GPU suite
    measures throughput through this same function on synthetic data.)"""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = module_class(OmegaConf.to_container(cfg), vocab)
    if start is not None:
        module.start_from(start)
    if cfg.trainer.compile:
        module.lm.backbone.compile()  # in place: checkpoint keys stay those of the plain module
    trainer = build_trainer(cfg, run_dir, monitor=monitor, callbacks=callbacks)
    trainer.fit(module, datamodule=DataModule(cfg, train_set, valid_set), ckpt_path=resume)
    return trainer


def distil(cfg: DictConfig) -> Path:
    """Distil (or resume distilling) the UDLM of `distil.teacher` into the run `run_dir`
    (`distil_module`): the run trains distil.rounds x distil.steps_per_round steps, or stops at
    trainer.max_steps if that is fewer (no time budget), and writes no best.ckpt, so every command
    loads its last student."""
    teacher = _distillation_teacher(cfg)  # refused before the run folder is touched
    d = cfg.distil
    cfg = cfg.copy()
    planned = int(d.rounds * d.steps_per_round)
    if cfg.trainer.max_steps < planned and int(os.environ.get("RANK", "0")) == 0:
        print(f"distil: trainer.max_steps={cfg.trainer.max_steps} stops the run before its {planned:,} steps "
              f"({d.rounds} rounds x {d.steps_per_round:,}); the same command with a larger trainer.max_steps resumes it")
    OmegaConf.update(cfg, "trainer.max_steps", min(int(cfg.trainer.max_steps), planned))
    OmegaConf.update(cfg, "trainer.max_minutes", None)
    run_dir, resume = _prepare_run_dir(cfg)
    if not (run_dir / "tokenizer").exists():
        shutil.copytree(teacher.run_dir / "tokenizer", run_dir / "tokenizer")  # the teacher's vocabulary
    train_set, valid_set, tokenizer = _datasets(cfg, run_dir)
    start = None if resume is not None else teacher.lm.backbone.state_dict()
    fit(cfg, run_dir, train_set, valid_set, vocab_info(tokenizer, model_vocab_size(cfg.diffusion, tokenizer)),
        resume=resume, start=start, module_class=LitDistillation, monitor=None)
    return run_dir


def _distillation_teacher(cfg: DictConfig) -> Pipeline:
    """The teacher's pipeline (EMA weights), after checking it is a continuous-time UDLM of this
    run's model and data."""
    if cfg.distil.teacher is None:
        raise ConfigError("discdiff distil needs distil.teacher=RUN_DIR (a trained UDLM run folder or .ckpt)")
    if cfg.diffusion != "uniform" or cfg.T:
        raise ConfigError("discrete consistency distillation follows the Gaussian behind uniform noise: "
                          "algo=udlm in continuous time")
    teacher = load(cfg.distil.teacher, device="cpu")
    if teacher.cfg.diffusion != "uniform" or teacher.cfg.T:
        raise ConfigError(f"distil.teacher={cfg.distil.teacher} is not a continuous-time UDLM "
                          f"(diffusion={teacher.cfg.diffusion}, T={teacher.cfg.T})")
    for key in ("model", "data.name", "data.length", "data.label_col", "time_conditioning"):
        if OmegaConf.select(teacher.cfg, key) != OmegaConf.select(cfg, key):
            raise ConfigError(f"{key} differs from the teacher's ({OmegaConf.select(teacher.cfg, key)}); the student "
                              "is the teacher's network on the teacher's data")
    return teacher


def _generator(cfg: DictConfig) -> Pipeline | None:
    """For classifier.kind=head: the generator's pipeline (EMA weights), after checking it reads
    the same data; None for other kinds."""
    if cfg.classifier.kind != "head":
        return None
    pipe = load(cfg.classifier.generator, device="cpu")
    for key in ("name", "length"):
        if pipe.cfg.data[key] != cfg.data[key]:
            raise ConfigError(f"data.{key}={cfg.data[key]} differs from the generator's "
                              f"{pipe.cfg.data[key]}; a head classifier reads the generator's data")
    return pipe


def train_classifier(cfg: DictConfig) -> Path:
    """Train (or resume) the classifier of `classifier.kind` (data.label_col gives the labels);
    the run folder is laid out like a generator's."""
    check_classifier(cfg)
    generator = _generator(cfg)  # refused before the run folder is touched
    run_dir, resume = _prepare_run_dir(cfg, kind="classifier")
    if generator is not None and not (run_dir / "tokenizer").exists():
        shutil.copytree(generator.run_dir / "tokenizer", run_dir / "tokenizer")  # the generator's vocabulary
    train_set, valid_set, tokenizer = _datasets(cfg, run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    described = None if generator is None else {"config": OmegaConf.to_container(generator.cfg),
                                                "vocab": vocab_info(generator.tokenizer,
                                                                    generator.lm.backbone.vocab_size)}
    diffusion = cfg.diffusion if generator is None else generator.cfg.diffusion  # what the classifier reads
    module = LitClassifier(OmegaConf.to_container(cfg),
                           vocab_info(tokenizer, classifier_vocab_size(cfg.classifier.kind, diffusion, tokenizer)),
                           described)
    if generator is not None:
        module.classifier.generator.load_state_dict(generator.lm.state_dict())
    if cfg.trainer.compile:
        module.classifier.backbone.compile()
    trainer = build_trainer(cfg, run_dir, monitor="val/ce")
    trainer.fit(module, datamodule=DataModule(cfg, train_set, valid_set), ckpt_path=resume)
    return run_dir
