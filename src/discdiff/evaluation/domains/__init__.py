"""Evaluation domains: what `discdiff eval <command>` and the guidance study measure for each kind
of data.

A domain (molecules, text, DNA, images) is one plug-in: it scores a samples record (`evaluate`:
the table `eval <command>` writes, plus its pictures or per-sample files; `score`: one setting's
row of the guidance study), says which classes `eval <command>` steers toward when it samples,
and names the two columns of the study's Pareto plot. The dataset registry gives each dataset a
`domain`; `DOMAINS` maps it to its plug-in: adding a domain is one module registered here.

Every domain also gets `target_accuracy` in the study and the `oracle_*` scores of eval species /
images when an evaluation classifier judges the samples (`eval.classifier`, an
`evaluation.oracle`: a discdiff clean classifier, or a HuggingFace sequence-classification model
that reads the decoded samples).
"""

from __future__ import annotations

from typing import Optional

from omegaconf import DictConfig

from ...data.registry import get_spec
from .base import Axis, Context, Domain
from .dna import DNA
from .images import Images
from .molecules import Molecules
from .text import Text

__all__ = ["DOMAINS", "Axis", "Context", "Domain", "of_command", "of_data"]

#: dataset domain (`DatasetSpec.domain`) -> its plug-in: the one place a domain is registered
DOMAINS: dict[str, type[Domain]] = {d.name: d for d in (Molecules, Text, DNA, Images)}


def of_command(command: str) -> type[Domain]:
    """The domain `eval <command>` evaluates."""
    return next(d for d in DOMAINS.values() if d.command == command)


def of_data(data: DictConfig, command: Optional[str] = None) -> type[Domain]:
    """The domain of a model's dataset; with `command`, refused in one line when that eval command
    is another domain's."""
    domain = get_spec(data.name).domain
    if domain not in DOMAINS:
        raise ValueError(f"discdiff has no evaluation for {data.name} ({domain}); it has: {', '.join(DOMAINS)}")
    found = DOMAINS[domain]
    if command is not None and found.command != command:
        raise ValueError(f"eval {command} scores {of_command(command).name}; this model was trained on "
                         f"data={data.name} ({domain}): use eval {found.command}")
    return found
