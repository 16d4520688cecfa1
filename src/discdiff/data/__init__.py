"""Datasets and tokenizers for discdiff.

Entry points: :func:`build_datasets` turns a data config into train/valid datasets of stored
tokens and their tokenizer; :func:`build_split` gives an evaluation split (valid or test)
(`discdiff.data.datasets`). The registry (`discdiff.data.registry`) declares every dataset and
the data options; one loader module per source family reads the raw data.
"""

from ..files import cache_root
from .datasets import build_datasets, build_split, build_splits, load_tokens
from .registry import REGISTRY, DataConfig, DatasetSpec, Splits, get_spec, implemented
from .token_files import Tokens
from .tokenizers import BertTokenizer, CharTokenizer, SmilesTokenizer, Tokenizer, load_tokenizer

__all__ = ["REGISTRY", "BertTokenizer", "CharTokenizer", "DataConfig", "DatasetSpec", "SmilesTokenizer", "Splits",
           "Tokenizer", "Tokens", "build_datasets", "build_split", "build_splits", "cache_root", "get_spec",
           "implemented", "load_tokenizer", "load_tokens"]
