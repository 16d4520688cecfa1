"""The paper's metrics as plain functions of plain inputs (strings, arrays, a judge model), usable
without a run folder; `discdiff eval` and the guidance study compute their numbers with these and
nothing else.

Each default column is defined as the paper's evaluation code (kuleshov-group/
discrete-diffusion-guidance, `guidance_eval/*.py`, `eval_utils.py`) computes it; where discdiff
also reports another definition, it stands beside it under its own name. docs/metrics.md is the
table: metric, the paper's definition, function, output key, the test that checks it.

- `molecules`: QM9 validity, uniqueness, novelty, property statistics (Fig. 3, Table 8), with the
  canonical counts and the strict decoding beside;
- `text`: generative perplexity (truncated as the paper, whole-text beside), entropy, n-gram
  diversity (spaCy tokens as the paper, judge tokens beside), MAUVE (Table 5);
- `dna`: k-mer spectra and their Jensen-Shannon distances (natural log as the paper, bits beside),
  the neural discriminator AUROC (k-mer logistic regression beside) (Table 3);
- `images`: FID and IS through torchmetrics, classifier-feature FID (Table 4);
- `classes`: how often samples hit their target class: accuracy, macro F1 over all classes, MCC
  (Tables 3 and 4, the studies' target_accuracy).
"""
