"""Evaluation of models and their samples, one module per concern (imported on use, so that a
domain's libraries, e.g. RDKit for molecules, are needed only where that domain is evaluated):

- perplexity: NELBO / perplexity / bits per token of a split;
- samples: reading samples files;
- qm9: validity, uniqueness, novelty and properties of molecules, pictures;
- text: generative perplexity under a causal LM judge, entropy, n-gram diversity;
- dna: k-mer Jensen-Shannon distances, discriminator AUROC, oracle-classifier scores;
- domains: what the guidance study measures per domain; guidance_study: the study itself.
"""
