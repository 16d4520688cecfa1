"""Judge the kept samples of a text guidance study again: fill or replace each row's fluency
columns (gen_ppl, gen_ppl_full, mean_sample_ppl, entropy, diversity, diversity_judge, mauve,
num_tokens) under another causal LM judge.

The study's samples can then be drawn where a GPU is (`eval guidance ... eval.judge=none`) and
judged on a machine that holds the judge, here the offline SmolLM2-135M of our CPU runs:

    python bench/rescore_text_study.py runs/text-gpu/study --judge smollm2

Rows are matched to their samples by model, method, gamma and seed
(`samples/<model>_<method>_g<gamma>_s<seed>.json`, as `evaluation.study` writes them);
the table and the Pareto plot are rewritten in place. The generator's run folder (`--run-dir`,
default: the study folder's parent, where `eval guidance` writes it) gives the sequence length
gen_ppl cuts at and the validation texts MAUVE compares with (`--no-mauve` leaves MAUVE out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from omegaconf import OmegaConf  # noqa: E402

from discdiff.evaluation import study  # noqa: E402
from discdiff.evaluation.domains import Context  # noqa: E402
from discdiff.evaluation.domains.text import Text  # noqa: E402
from discdiff.evaluation.samples import read_samples  # noqa: E402
from discdiff.evaluation.tables import write_metrics  # noqa: E402
from discdiff.loading import stored_config  # noqa: E402


def rescore(study_dir: Path, judge_name: str, batch_size: int, run_dir: Path | None = None,
            mauve: bool = True) -> list[dict]:
    table_path = study_dir / f"{study.TABLE}.json"
    if not table_path.exists():
        raise SystemExit(f"{table_path} does not exist: give the folder of an `eval guidance` study")
    table = json.loads(table_path.read_text())
    run_dir = run_dir or study_dir.parent
    generator = stored_config(run_dir)
    if generator is None:
        raise SystemExit(f"{run_dir} holds no discdiff run configuration: give the generator's run with --run-dir")
    cfg = OmegaConf.create({"seed": generator.seed,
                            "eval": {"judge": judge_name, "judge_batch_size": batch_size, "mauve": mauve}})
    try:
        domain = Text(Context(generator.data, cfg, "cpu", length=generator.data.length))
        domain.prepare()
    except ValueError as err:  # one line naming the judge and what was tried
        raise SystemExit(str(err)) from None
    for row in table:
        if row.get("method") == "data":
            continue
        name = study.samples_name(row)
        path = study_dir / "samples" / f"{name}.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: the study keeps one samples file per row of {table_path}")
        row.update(domain.score(read_samples(path)), judge=judge_name)
        print(f"{name}: gen_ppl {row['gen_ppl']:.1f}, entropy {row['entropy']:.2f}, "
              f"target_accuracy {row.get('target_accuracy', '')}", flush=True)
    write_metrics(table, study_dir, study.TABLE)
    study.pareto_plot(table, study_dir / "guidance_pareto.png", domain)
    study.steps_plot(table, study_dir / "guidance_steps.png", domain)
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("study_dir", type=Path)
    p.add_argument("--judge", default="smollm2", help="as eval.judge: HF name or folder, GGUF file, smollm2")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--run-dir", type=Path, default=None, help="the generator's run folder (default: study_dir/..)")
    p.add_argument("--no-mauve", action="store_true", help="leave MAUVE out")
    args = p.parse_args(argv)
    rescore(args.study_dir, args.judge, args.batch_size, args.run_dir, mauve=not args.no_mauve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
