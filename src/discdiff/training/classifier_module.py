"""The Lightning module of `discdiff train-classifier`: a classifier p(y | x) for guidance or evaluation.

`classifier.kind` picks what it reads (`discdiff.factory.build_classifier`):
- noisy: x_t of the generator family's forward process at t ~ U[eps, 1] and sigma(t), for D-CBG;
- clean: x0 (an evaluation classifier);
- prefix: every prefix of x0, one prediction per position (FUDGE);
- head: the last hidden states of a frozen trained generator (`classifier.generator`), on the
  generator's own noisy inputs (NOS) or clean prefixes (PPLM).
The loss is the cross-entropy of the label (averaged over positions for prefix predictions).
Validation scores whole sequences with fixed noise per batch and logs cross-entropy, accuracy and
per-class precision / recall; reseeding, resumption and the EMA are those of generator runs.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ..config import restore
from ..factory import build_classifier, build_language_model, label_classes
from .module import ResumableModule


class LitClassifier(ResumableModule):
    kind = "classifier"

    def __init__(self, config: dict, vocab: dict, generator: Optional[dict] = None):
        """config: the resolved run configuration as a plain dict; vocab: vocab_size and the
        special token ids of the tokenizer (so a checkpoint rebuilds the network by itself);
        generator: for classifier.kind=head, the generator's {"config", "vocab"} (its weights
        are part of this module's state)."""
        super().__init__()
        self.save_hyperparameters()
        self.cfg: DictConfig = restore(config)
        lm = None
        if generator is not None:
            lm = build_language_model(restore(generator["config"]), **generator["vocab"])
        self.classifier, self.corrupt = build_classifier(self.cfg, vocab, lm)
        self._init_resumable()
        self._val_sums = self._confusion = None

    @property
    def network(self) -> torch.nn.Module:
        return self.classifier

    def scores(self, batch, whole: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(y | x) (B, C) or per prefix (B, L, C), cross-entropy per sequence (B,)); whole=True
        scores whole sequences only (validation)."""
        x, sigma = self.corrupt(batch["input_ids"])
        log_p = self.classifier(x, sigma) if whole else self.classifier.training_log_probs(x, sigma)
        labels = batch["label"]
        if log_p.dim() == 3:  # one prediction per prefix
            ce = F.nll_loss(log_p.transpose(1, 2), labels[:, None].expand(-1, log_p.shape[1]), reduction="none")
            return log_p[:, -1], ce.mean(1)
        return log_p, F.nll_loss(log_p, labels, reduction="none")

    def training_step(self, batch, batch_idx):
        self.reseed()
        batch = self.augmented(batch)
        log_p, ce = self.scores(batch)
        self.advance()
        loss = ce.mean()
        self.log("train/loss", loss, prog_bar=True)
        if self.logs_this_step():
            self.log("train/ce", loss.detach())
            self.log("train/acc", (log_p.argmax(-1) == batch["label"]).float().mean())
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    # ----- validation (EMA weights, fixed noise) ------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.swap_ema()
        self._val_sums = torch.zeros(2, device=self.device, dtype=torch.float64)
        classes = label_classes(self.cfg)
        self._confusion = torch.zeros(classes, classes, device=self.device, dtype=torch.float64)

    def validation_step(self, batch, batch_idx):
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.cfg.seed + batch_idx)
            log_p, ce = self.scores(batch, whole=True)
        labels = batch["label"]
        self._val_sums += torch.stack([ce.double().sum(), torch.tensor(float(ce.numel()), device=self.device,
                                                                       dtype=torch.float64)])
        classes = self._confusion.shape[0]
        pairs = labels * classes + log_p.argmax(-1)  # confusion[true, predicted]
        self._confusion += torch.bincount(pairs, minlength=classes ** 2).view(classes, classes)

    def on_validation_epoch_end(self) -> None:
        self.swap_ema()
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        confusion = self.trainer.strategy.reduce(self._confusion, reduce_op="sum")
        metrics = validation_metrics(sums[0], sums[1], confusion)
        shown = ("val/ce", "val/acc")
        self.log_dict({k: metrics[k] for k in shown}, prog_bar=True, sync_dist=False)
        self.log_dict({k: v for k, v in metrics.items() if k not in shown}, sync_dist=False)


def validation_metrics(ce_sum: torch.Tensor, count: torch.Tensor, confusion: torch.Tensor) -> dict:
    """val/ce, val/acc and val/precision_c, val/recall_c per class c from a confusion matrix
    [true, predicted] (a class never predicted / never present has precision / recall 0)."""
    tp = confusion.diagonal()
    metrics = {"val/ce": (ce_sum / count.clamp_min(1)).float(),
               "val/acc": (tp.sum() / confusion.sum().clamp_min(1)).float()}
    precision = tp / confusion.sum(0).clamp_min(1)
    recall = tp / confusion.sum(1).clamp_min(1)
    for c in range(confusion.shape[0]):
        metrics[f"val/precision_{c}"] = precision[c].float()
        metrics[f"val/recall_{c}"] = recall[c].float()
    return metrics
