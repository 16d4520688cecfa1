"""text8: lowercase Wikipedia text over a-z and space, modelled as 256-character blocks.

Sources (``cfg.source``):

* ``hub`` / ``auto``: the real text8 (first 1e8 characters of a cleaned 2006 English
  Wikipedia dump) downloaded from mattmahoney.net into ``<cache>/text8/text8.zip``;
  split 90M / 5M / 5M characters into train / valid / test;
* ``offline``: the 206-page enwiki dump sample shipped in the PyPI ``gensim==4.4.0``
  wheel (installed gensim, or the wheel file placed in ``<cache>/text8/``), cleaned
  here the text8 way (about 5.2M characters) and split 90/5/5 proportionally;
* ``cfg.path``: a text8-style ``.zip``, a MediaWiki XML dump (``.xml`` / ``.bz2``) or plain text.
"""

from __future__ import annotations

import bz2
import html
import importlib.util
import re
import urllib.request
import zipfile
from pathlib import Path

from ..files import cache_root
from .cache import CacheError, file_digest, load_or_build
from .registry import DataConfig, DatasetSpec, Splits
from .tokenizers import CharTokenizer

TEXT8_CHARS = 100_000_000
TEXT8_SPLIT = (90_000_000, 95_000_000)
SPLIT_FRACTIONS = (0.90, 0.95)
CLEANING_VERSION = 1
STREAM_PIECE = 1_000_000  # characters tokenized per piece of a split's stream
ENWIKI_SAMPLE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
ENWIKI_IN_GENSIM = ("test", "test_data", ENWIKI_SAMPLE)

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_PAGE_TEXT = re.compile(r"<text\b[^>]*>(.*?)</text>", re.DOTALL)
_REF = re.compile(r"<ref\b[^>]*?/>|<ref\b[^>]*>.*?</ref>", re.DOTALL | re.IGNORECASE)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|[^{}]*?\|\}", re.DOTALL)
_INNER_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_EXTERNAL_LINK = re.compile(r"\[(?:https?|ftp)://[^\s\]]*\s*([^\]]*)\]")
_URL = re.compile(r"(?:https?|ftp)://\S+")
_EMPHASIS = re.compile(r"'{2,}")
_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.MULTILINE)
_LIST_MARK = re.compile(r"^[*#:;]+\s*", re.MULTILINE)
_NON_LETTER = re.compile(r"[^a-z]+")
_IMAGE_NS = ("file", "image")
_DROP_NS = re.compile(r"^[a-z\-]{2,12}:")  # interlanguage and other namespaces


def wiki_page_texts(xml: str) -> list[str]:
    """Wikitext of each article in a MediaWiki XML dump, redirects skipped, entities decoded."""
    pages = (html.unescape(m) for m in _PAGE_TEXT.findall(xml))
    return [p for p in pages if not p.lstrip().upper().startswith("#REDIRECT")]


def _resolve_link(match: re.Match) -> str:
    """``[[target|label]]`` -> label; images keep their caption, categories their name."""
    target, _, rest = match.group(1).partition("|")
    namespace, colon, name = target.partition(":")
    ns = namespace.strip().lower()
    if colon and ns in _IMAGE_NS:
        return " " + rest.rpartition("|")[2] + " "
    if colon and ns == "category":
        return " " + name + " "
    if colon and _DROP_NS.match(target.lower()):
        return " "
    return rest.rpartition("|")[2] if rest else target


def _remove_nested(pattern: re.Pattern, text: str, repl="") -> str:
    """Apply ``pattern`` until nothing matches (removes nested constructs from the inside out)."""
    while True:
        text, n = pattern.subn(repl, text)
        if n == 0:
            return text


def strip_wiki_markup(wikitext: str) -> str:
    """Plain prose of one article: refs, comments, tags, templates, tables and markup removed.

    Link labels, image captions, category names and heading titles are kept as text.
    """
    text = _COMMENT.sub(" ", wikitext)
    text = _REF.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _remove_nested(_TEMPLATE, text, " ")
    text = _remove_nested(_TABLE, text, " ")
    text = _remove_nested(_INNER_LINK, text, _resolve_link)
    text = _EXTERNAL_LINK.sub(r" \1 ", text)
    text = _URL.sub(" ", text)
    text = _EMPHASIS.sub("", text)
    text = _HEADING.sub(r"\1", text)
    return _LIST_MARK.sub("", text)


def text8_normalize(text: str) -> str:
    """Lowercase, spell out digits, map every non a-z run to one space, strip the ends."""
    text = text.lower()
    for digit, word in enumerate(DIGIT_WORDS):
        text = text.replace(str(digit), f" {word} ")
    return _NON_LETTER.sub(" ", text).strip()


def clean_wiki_dump(xml: str) -> str:
    """text8-style text of a whole MediaWiki XML dump (pages joined by single spaces)."""
    return " ".join(filter(None, (text8_normalize(strip_wiki_markup(p)) for p in wiki_page_texts(xml))))


def _split_text(text: str, cut1: int, cut2: int) -> tuple[str, str, str]:
    """(train, valid, test) = text[:cut1], text[cut1:cut2], text[cut2:]."""
    return text[:cut1], text[cut1:cut2], text[cut2:]


def _proportional_split(text: str) -> tuple[str, str, str]:
    return _split_text(text, int(len(text) * SPLIT_FRACTIONS[0]), int(len(text) * SPLIT_FRACTIONS[1]))


def _read_text8_zip(path: Path, meta: dict | None = None) -> str:
    """The single member of a text8 zip, checked to be 1e8 characters."""
    with zipfile.ZipFile(path) as zf:
        text = zf.read("text8").decode("ascii")
    if len(text) != TEXT8_CHARS:
        raise CacheError(f"{path} holds {len(text)} characters, text8 has {TEXT8_CHARS}")
    return text


def download_text8(cfg: DataConfig, spec: DatasetSpec) -> str:
    """The real text8, downloaded once into ``<cache>/text8/text8.zip``."""
    path = cache_root(cfg.cache_dir) / "text8" / "text8.zip"

    def build(tmp: Path) -> dict:
        try:
            urllib.request.urlretrieve(spec.url, tmp)
        except OSError as err:
            raise ValueError(f"could not download text8 from {spec.url} ({err}); "
                             "use source=offline for the gensim enwiki sample") from err
        return {"bytes": tmp.stat().st_size}

    return load_or_build(path, {"source": spec.url}, build, _read_text8_zip)


def _enwiki_sample_bytes(cache_dir: Path) -> tuple[str, bytes]:
    """(origin, compressed dump) of gensim's enwiki sample: installed gensim, else a gensim wheel in ``cache_dir``."""
    spec = importlib.util.find_spec("gensim")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root).joinpath(*ENWIKI_IN_GENSIM)
        if path.is_file():
            return f"installed gensim: {path}", path.read_bytes()
    for wheel in sorted(cache_dir.glob("gensim-*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            return f"wheel {wheel.name}", zf.read("gensim/" + "/".join(ENWIKI_IN_GENSIM))
    raise ValueError(f"text8 offline source needs gensim's enwiki sample: pip install gensim==4.4.0, "
                     f"or pip download --no-deps gensim==4.4.0 -d {cache_dir}")


def offline_text(cfg: DataConfig) -> str:
    """gensim's enwiki sample cleaned the text8 way, cached in ``<cache>/text8/``."""
    directory = cache_root(cfg.cache_dir) / "text8"
    path = directory / "enwiki_sample_text8.txt"

    def build(tmp: Path) -> dict:
        origin, data = _enwiki_sample_bytes(directory)
        text = clean_wiki_dump(bz2.decompress(data).decode("utf-8"))
        tmp.write_text(text, encoding="ascii")
        return {"chars": len(text), "origin": origin}

    def load(p: Path, meta: dict) -> str:
        text = p.read_text(encoding="ascii")
        if len(text) != meta.get("chars"):
            raise CacheError(f"{len(text)} characters, manifest says {meta.get('chars')}")
        return text

    key = {"source": f"gensim==4.4.0:{ENWIKI_SAMPLE}", "version": CLEANING_VERSION}
    return load_or_build(path, key, build, load)


def read_text_file(path: Path) -> str:
    """text8-style text of a local file: a text8 zip, a MediaWiki XML dump (.xml/.bz2) or plain text."""
    if path.suffix == ".zip":
        return _read_text8_zip(path)
    if path.suffix == ".bz2":
        return clean_wiki_dump(bz2.decompress(path.read_bytes()).decode("utf-8"))
    raw = path.read_text(encoding="utf-8")
    return clean_wiki_dump(raw) if path.suffix == ".xml" else text8_normalize(raw)


def identity(cfg: DataConfig, spec: DatasetSpec) -> str:
    """What the cached tokens are made from: the source and the cleaning version."""
    if cfg.path is not None:
        source = f"file:{file_digest(Path(cfg.path).expanduser())}"
    else:
        source = "offline:gensim-enwiki" if cfg.source == "offline" else f"url:{spec.url}"
    return f"text8:{source}:cleaning={CLEANING_VERSION}"


def tokenizer(cfg: DataConfig, spec: DatasetSpec) -> CharTokenizer:
    return CharTokenizer()


def load_splits(cfg: DataConfig, spec: DatasetSpec) -> Splits:
    """Train / valid / test character streams (each as pieces of STREAM_PIECE characters, which
    the "blocks" layout joins again) and the character tokenizer."""
    if cfg.path is not None:
        splits = _proportional_split(read_text_file(Path(cfg.path).expanduser()))
    elif cfg.source == "offline":
        splits = _proportional_split(offline_text(cfg))
    else:
        splits = _split_text(download_text8(cfg, spec), *TEXT8_SPLIT)
    train, valid, test = ([text[i:i + STREAM_PIECE] for i in range(0, len(text), STREAM_PIECE)] for text in splits)
    return Splits(train=train, valid=valid, test=test, tokenizer=tokenizer(cfg, spec))
