"""Text (LM1B, text8; paper Sec. 5.3, Amazon Polarity): the fluency of samples under a causal LM
judge (`eval.judge`: generative perplexity as the paper cuts it at the generator's length, and
over whole texts beside it), with the unigram entropy, the n-gram diversity (spaCy tokens as the
paper, judge tokens beside) and MAUVE against as many real texts of the validation split
(`eval.mauve`; of the samples' target classes when the data has labels) that expose a collapsed
or incoherent sampler (`discdiff.metrics.text`).

eval gen-ppl writes gen_ppl.csv / .json (one row) and gen_ppl_per_sample.json. The study puts
how often the evaluation classifier gives the target class (`target_accuracy`, so it needs
`eval.classifier`) against the generative perplexity; `eval.judge=none` leaves the fluency
columns out (sample where a GPU is, judge the kept samples elsewhere:
bench/rescore_text_study.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...files import write_json
from ...data.datasets import reference_texts
from ...metrics.text import evaluate_text_samples, judge_path, load_judge
from ..samples import Samples
from .base import Axis, Context, Domain

#: the columns of a study row (the rest of the judge's report is per sample)
FLUENCY = ("gen_ppl", "gen_ppl_full", "mean_sample_ppl", "entropy", "diversity", "diversity_judge", "mauve",
           "mauve_samples", "mauve_references", "num_tokens")


class Text(Domain):
    name, command, table = "text", "gen-ppl", "gen_ppl"
    title = "Sentiment guidance"
    x = Axis("gen_ppl", "generative perplexity (judge; lower is more fluent)")
    y = Axis("target_accuracy", "samples of the target class (evaluation classifier)")
    oracle_scores = "the text guidance study scores the target class"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.judge, self.batch_size = None, ctx.cfg.eval.judge_batch_size

    def steps_axes(self) -> tuple[Axis, ...]:
        """Fluency, diversity and closeness to real text (the judge's scores)."""
        return (self.x, Axis("entropy", "entropy of the samples' tokens (nats)"),
                Axis("mauve", "MAUVE against real texts (higher is closer)"))

    def prepare(self) -> None:
        """The judge of `eval.judge` (none: no judge)."""
        judge = self.ctx.cfg.eval.judge
        self.judge = None if judge == "none" else load_judge(judge_path(judge), device=self.ctx.device)

    def _judged(self, samples: Samples, progress: bool) -> dict:
        if self.judge is None:
            raise ValueError("eval gen-ppl needs a judge: eval.judge=NAME (a HuggingFace causal LM, a GGUF file "
                             "or smollm2), not none")
        if self.ctx.length is None:
            raise ValueError("eval gen-ppl cuts samples at the generator's sequence length (data.length), which "
                             "is not known here: give the run_dir of the model that drew them")
        references, matched = self._references(samples)
        result = evaluate_text_samples(samples.texts, self.judge, max_length=self.ctx.length,
                                       batch_size=self.batch_size, references=references, progress=progress)
        return result if references is None else {**result, "mauve_references": matched}

    def _references(self, samples: Samples) -> tuple[Optional[list[str]], str]:
        """MAUVE's real texts (None with eval.mauve=false), one per sample: of its target class
        when the samples have targets and the data labels (data.label_col), else of any class."""
        if not self.ctx.cfg.eval.mauve:
            return None, ""
        matched = samples.conditions is not None and bool(self.ctx.data.get("label_col"))
        classes = samples.conditions.tolist() if matched else [None] * len(samples.texts)
        return (reference_texts(self.ctx.data, classes, self.ctx.length, seed=self.ctx.cfg.seed),
                "of the target classes" if matched else "of any class")

    def evaluate(self, samples: Samples, out_dir: Path, provenance: dict) -> tuple[list[dict], list[Path]]:
        result = self._judged(samples, progress=True)
        per_sample = out_dir / "gen_ppl_per_sample.json"
        write_json(per_sample, [{"text": t, **row} for t, row in zip(samples.texts, result.pop("per_sample"))])
        return [{**result, **provenance}], [per_sample]

    def score(self, samples: Samples) -> dict:
        if self.judge is None:
            return {}
        result = self._judged(samples, progress=False)
        return {k: result[k] for k in FLUENCY if k in result}

    def printed(self, rows: list[dict]) -> dict:
        return rows[0]

    @property
    def shown(self) -> tuple[str, ...]:
        return "gen_ppl", "entropy", "diversity", "mauve"
