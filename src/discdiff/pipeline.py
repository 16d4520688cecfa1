"""`discdiff.load`: a trained model, its tokenizer and configuration, ready to sample and score."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig

from .data import load_tokenizer
from .lm import LanguageModel
from .sampling import SampleOutput


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

    def guidance(self, name: Optional[str], gamma: float = 1.0, condition: int = 1):
        """A guidance strategy for this model by name (None: unguided). D-CFG needs a
        label-conditional model; its null class is the model's extra label."""
        from .guidance import CFG

        if name is None:
            return None
        if name != "cfg":
            raise ValueError(f"unknown guidance '{name}' for a trained model; allowed: cfg")
        if self.lm.num_classes is None:
            raise ValueError("guidance=cfg needs a label-conditional model (train with data.label_col=...)")
        self.labels(condition, 1)  # refuses a class the model does not have
        return CFG(gamma, condition, null_class=self.lm.num_classes)

    @torch.no_grad()
    def sample(self, num_samples: int, steps: Optional[int] = None, *, label: Optional[int] = None,
               batch_size: Optional[int] = None, seed: Optional[int] = None, progress: bool = False,
               **options) -> SampleOutput:
        """Sample token ids (num_samples, L) in batches; options go to the family's sampler
        (eps, argmax, use_cache, float64)."""
        steps = steps or self.cfg.sampling.steps
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


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(checkpoint file, run folder) for a run folder (best.ckpt, else last.ckpt) or a .ckpt file."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).exists():
                return path / "checkpoints" / name, path
        raise FileNotFoundError(f"run folder {path} has no checkpoints/best.ckpt or checkpoints/last.ckpt; "
                                "train it first (discdiff train run_dir=...)")
    if path.is_file():
        return path, path.parent.parent
    raise FileNotFoundError(f"{path} is neither a run folder nor a checkpoint file")


def load(path: str | Path, *, device=None, disable_ema: bool = False) -> Pipeline:
    """Load a trained model from a run folder or a checkpoint file written by `discdiff train`."""
    from .training.module import LitLanguageModel

    checkpoint, run_dir = resolve_checkpoint(path)
    try:
        module = LitLanguageModel.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"cannot read checkpoint {checkpoint}: {str(err).splitlines()[0]}") from None
    if module.ema is not None and not disable_ema:
        module.ema.copy_to(module.lm)
    tokenizer_dir = run_dir / "tokenizer"
    if not tokenizer_dir.exists():
        raise FileNotFoundError(f"{tokenizer_dir} is missing: a run folder keeps its tokenizer next to checkpoints/")
    pipe = Pipeline(module.lm, load_tokenizer(tokenizer_dir), module.cfg, checkpoint, run_dir)
    return pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
