"""Evaluation classifiers ("oracles"): the class a sample belongs to, judged by a model that did
not steer it (the paper's held-out classifiers of Sec. 5.2-5.4).

Two kinds, chosen by what the path holds:

* a discdiff clean classifier (`discdiff train-classifier classifier.kind=clean`: its run folder
  or a .ckpt) reads the samples' token ids, so it must share the generator's tokenizer;
* a HuggingFace sequence-classification model (a folder with config.json, or a hub id) reads the
  decoded texts through its own tokenizer — e.g. a sentiment model for reviews, a DNA language
  model fine-tuned on species.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import torch

from ..errors import first_line
from ..hub.format import is_hub_id
from ..loading import Pipeline, load_classifier

CHUNK = 256


class Oracle(Protocol):
    num_classes: int
    source: str

    def predict(self, tokens: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Predicted class of each sample (N,), from its token ids (N, L) or its decoded text."""


class ClassifierOracle:
    """A discdiff clean classifier: argmax_y log p(y | x) on the token ids, in chunks."""

    def __init__(self, classifier, device):
        self.classifier, self.device = classifier, device
        self.num_classes = int(classifier.num_classes)
        self.source = str(classifier.run_dir)

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        return torch.cat([self.classifier(chunk.to(self.device), None).argmax(-1).cpu() for chunk in tokens.split(CHUNK)])


class HFOracle:
    """A HuggingFace AutoModelForSequenceClassification reading the decoded texts."""

    def __init__(self, name_or_dir: str, device, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer  # heavy: only for such a model

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_dir)
            self.model = AutoModelForSequenceClassification.from_pretrained(name_or_dir).to(device).eval()
        except (OSError, ValueError) as err:
            raise ValueError(f"{name_or_dir} is not a HuggingFace sequence-classification model: "
                             f"{first_line(err)}") from None
        self.device, self.batch_size = device, batch_size
        self.num_classes = int(self.model.config.num_labels)
        self.source = str(name_or_dir)

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        predicted = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                   return_tensors="pt").to(self.device)
            predicted.append(self.model(**batch).logits.argmax(-1).cpu())
        return torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)


def load_oracle(path: str, pipe: Pipeline) -> Oracle:
    """The evaluation classifier at `path` for the samples of `pipe`'s model: a HuggingFace model
    where `path` has a config.json (or is a hub id) and no discdiff checkpoint, else a discdiff
    clean classifier checked against the model (same tokenizer)."""
    folder = Path(path).expanduser()
    discdiff_run = folder.suffix == ".ckpt" or (folder / "checkpoints").is_dir()
    if not discdiff_run and ((folder / "config.json").is_file() or (not folder.exists() and is_hub_id(str(path)))):
        return HFOracle(str(path), pipe.device)
    classifier = load_classifier(path, device=pipe.device)
    pipe.check_classifier(classifier, 0, "clean")
    return ClassifierOracle(classifier, pipe.device)


def check_predictable(oracle: Oracle, classes: Sequence[int]) -> None:
    """Refuse target classes the oracle cannot predict."""
    outside = [c for c in classes if not 0 <= c < oracle.num_classes]
    if outside:
        raise ValueError(f"class {outside[0]} is not a class of the evaluation classifier {oracle.source}; "
                         f"allowed: 0..{oracle.num_classes - 1}")
