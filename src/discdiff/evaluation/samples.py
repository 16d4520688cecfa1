"""Samples: the one record every command writes and every evaluation reads, and the one way to draw
them toward target classes (`discdiff sample`, every `eval` command, the guidance study).

A samples file is a JSON object: `samples` (decoded strings), `token_ids` (the model's ids, one
list per sample), `conditions` (the class each sample was steered toward, null when sampled
without a target), `nfe` (network calls per sample) and whatever the writer adds about how they
were drawn (checkpoint, steps, guidance, gamma, seed, ...). Files from elsewhere need `samples`
only: a domain that reads token ids or targets says so when it refuses one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from omegaconf import OmegaConf

from ..files import write_json
from ..loading import Pipeline, sampler_label, sampler_options

EXPECTED = "expected a JSON object with a non-empty 'samples' list of strings"


@dataclass
class Samples:
    """Decoded `texts`, token ids (N, L) (None for a file without them), the network calls per
    sample, the class each was steered toward (N,) (None when none was) and, once an evaluation
    classifier has judged them, the class it predicts for each (N,)."""

    texts: list[str]
    tokens: Optional[torch.Tensor]
    nfe: int
    conditions: Optional[torch.Tensor]
    predicted: Optional[torch.Tensor] = None

    def by_class(self) -> tuple[dict[int, list[str]], Optional[dict[int, list[int]]]]:
        """({target class: its samples' texts}, {target class: the classes predicted for them} or None)."""
        generated, predicted = {}, {}
        for k, c in enumerate(self.conditions.tolist()):
            generated.setdefault(c, []).append(self.texts[k])
            if self.predicted is not None:
                predicted.setdefault(c, []).append(int(self.predicted[k]))
        return generated, (predicted if self.predicted is not None else None)


def write_samples(path: str | os.PathLike, samples: Samples, **info) -> None:
    """The samples file of `samples` (module docstring), with `info` about how they were drawn."""
    conditions = [None] * len(samples.texts) if samples.conditions is None else samples.conditions.tolist()
    write_json(path, {"samples": samples.texts, "token_ids": None if samples.tokens is None else samples.tokens.tolist(),
                      "conditions": conditions, "nfe": samples.nfe, **info})


def drawn_with(cfg, pipe: Pipeline) -> dict:
    """What a samples file records about how its samples were drawn by a command."""
    guidance = cfg.get("guidance")
    return {"steps": cfg.sampling.steps, "sampler": sampler_label(cfg.sampling), "label": cfg.sampling.label, "checkpoint": str(pipe.checkpoint),
            "guidance": None if guidance is None else OmegaConf.to_container(guidance)}


def read_samples(path: str | os.PathLike) -> Samples:
    """The samples of a samples file; one-line ValueError naming the file when it is not one."""
    record = _record(path)
    texts, ids = record["samples"], record.get("token_ids")
    conditions = record.get("conditions") or [None] * len(texts)
    if len(conditions) != len(texts) or (None in conditions and any(c is not None for c in conditions)):
        raise ValueError(f"{path}: 'conditions' must give a target class for every sample, or null for all "
                         "(unguided)")
    return Samples(texts, None if ids is None else torch.tensor(ids, dtype=torch.long), int(record.get("nfe") or 0),
                   None if conditions[0] is None else torch.tensor(conditions, dtype=torch.long))


def _record(path) -> dict:
    try:
        with open(path) as f:
            payload = json.load(f)
    except OSError as err:
        raise ValueError(f"{path}: {err.strerror or err}; {EXPECTED}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); {EXPECTED}") from None
    samples = payload.get("samples") if isinstance(payload, dict) else None
    if not isinstance(samples, list) or not samples or not all(isinstance(s, str) for s in samples):
        raise ValueError(f"{path}: {EXPECTED}")
    return payload


def check_model(path, samples: Samples, pipe: Pipeline) -> None:
    """Refuse samples whose token ids (where the file has them) are not this model's: out of its
    vocabulary, or not decoding to the file's texts with its tokenizer."""
    if samples.tokens is None:
        return
    vocab, ids = pipe.tokenizer.vocab_size, samples.tokens.tolist()
    if any(not 0 <= i < vocab for row in ids for i in row) or pipe.decode(ids) != samples.texts:
        raise ValueError(f"{path}: its token ids are not this model's ({pipe.tokenizer.kind} tokenizer, {vocab} "
                         "tokens): samples of another model? give that model's run_dir")


def configured_target(cfg) -> Optional[int]:
    """The class the sampling and guidance options steer toward: guidance.condition, else
    sampling.label (None: no target)."""
    guidance = cfg.get("guidance")
    return guidance.condition if guidance is not None else cfg.sampling.label


#: target class (None: no target) -> the sampler's options that steer toward it
Steering = Callable[[Optional[int]], dict]


def steering(pipe: Pipeline, guidance, classifier=None, label: Optional[int] = None) -> Steering:
    """How to steer `pipe` toward a class: the `guidance` group's method at its gamma (with
    `classifier`, loaded once; a conditional model reads `label` meanwhile), else the class as
    the label of a conditional model. No target (None) means no guidance."""
    if guidance is None:
        return lambda c: {"label": c}
    options = method_options(guidance)

    def toward(c: Optional[int]) -> dict:
        if c is None:  # no target: unguided
            return {"label": label}
        return {"label": label, "guidance": pipe.guidance(guidance.name, guidance.gamma, c, classifier=classifier,
                                                          **options)}

    return toward


def method_options(guidance) -> dict:
    """The guidance group's method-specific options (all but name, gamma, condition, classifier)."""
    return {k: v for k, v in guidance.items() if k not in ("name", "gamma", "condition", "classifier")}


def steer(toward: Steering, targets: Sequence[Optional[int]]) -> list[tuple[Optional[int], dict]]:
    """(target, the sampler's options toward it) for each target: every target's guidance is built,
    and so checked, before anything is sampled."""
    return [(c, toward(c)) for c in targets]


def draw(pipe: Pipeline, sampling, steered: Sequence[tuple[Optional[int], dict]], seed: int,
         progress: bool = False, steps: Optional[int] = None) -> Samples:
    """`sampling.num_samples` samples toward each target of `steered` in turn (`steer`; None: no
    target), with the `sampling` section's options (`steps`: instead of sampling.steps) and the
    same seed for every target."""
    n, tokens, nfe = sampling.num_samples, [], 0
    targets = [c for c, _ in steered]
    for _, options in steered:
        out = pipe.sample(n, steps or sampling.steps, batch_size=sampling.batch_size, seed=seed, progress=progress,
                          **sampler_options(sampling), **options)
        tokens.append(out.tokens.cpu())
        nfe = out.nfe
    tokens = torch.cat(tokens)
    conditions = None if None in targets else torch.tensor(list(targets)).repeat_interleave(n)
    return Samples(pipe.decode(tokens), tokens, nfe, conditions)
