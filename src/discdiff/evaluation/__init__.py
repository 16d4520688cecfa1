"""Evaluation of models and their samples:

- samples: the samples record (one type, one writer, one reader) and drawing samples toward
  target classes;
- evaluate: `discdiff eval <command>`, one flow for every domain; study: the guidance study;
- domains/: the plug-ins, one per kind of data (molecules, text, DNA, images), registered in
  `domains.DOMAINS`;
- pictures: the molecule grids, property histograms and image grids evaluations draw (the numbers
  are `discdiff.metrics`);
- perplexity: NELBO / perplexity / bits per token of a split; oracle: evaluation classifiers;
  tables: result tables as CSV and JSON.
"""
