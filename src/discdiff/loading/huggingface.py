"""HuggingFace model folders as models, and models as HuggingFace folders.

- `read_folder(source)`: a model folder or hub id in the published UDLM / MDLM format
  (`discdiff.hub.format`), or one written by `write_folder`, as a `Pipeline`.
- `write_folder(pipe, out)`: a model as a HuggingFace folder: config.json, model.safetensors
  (the published weight names), tokenizer files, a model card, and the modelling code
  (`hub/remote/`) that `AutoModelForMaskedLM.from_pretrained(out, trust_remote_code=True)` runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from ..config import compose, restore
from ..data import load_tokenizer
from ..data.tokenizers import TOKENIZER_FILE, BertTokenizer
from ..errors import described, first_line
from ..factory import algo_name, build_language_model, vocab_info
from ..files import write_json, write_text
from ..hub import format as hf_format
from ..models import DiT
from ..version import __version__
from .pipeline import Pipeline

REMOTE = Path(hf_format.__file__).parent / "remote"
BERT_VOCAB_SIZE = 30522  # bert-base-uncased, which the published LM1B checkpoints read
FAMILY_NAMES = {"udlm": "UDLM (uniform-noise diffusion)", "mdlm": "MDLM (masked diffusion)",
                "discdiff_ar": "autoregressive"}


def read_folder(source, *, data: Optional[DictConfig] = None) -> Pipeline:
    """The model of a HuggingFace folder or hub id, on the CPU (`data`: the dataset of a published
    checkpoint, e.g. for eval ppl)."""
    folder = hf_format.resolve(source)
    config = hf_format.read_config(folder)
    cfg = _run_config(config, str(source), data)
    tokenizer = _tokenizer(folder, config, str(source))
    if tokenizer.vocab_size != config["vocab_size"]:
        raise ValueError(f"{source}: the tokenizer has {tokenizer.vocab_size} tokens, the model {config['vocab_size']}")
    lm = build_language_model(cfg, **vocab_info(tokenizer), num_classes=hf_format.num_classes(config),
                              conditioning=config.get("conditioning", "silu_each"))
    try:
        lm.backbone.load_state_dict(hf_format.read_weights(folder))
    except RuntimeError as err:
        lines = str(err).splitlines()
        raise ValueError(f"the weights of {source} do not fit its config.json: "
                         f"{lines[1].strip() if len(lines) > 1 else first_line(err)}") from None
    return Pipeline(lm, tokenizer, cfg, folder, folder)


def _run_config(config: dict, source: str, data: Optional[DictConfig]) -> DictConfig:
    """The discdiff configuration of a model folder: the one it was exported with, or for a
    published checkpoint, its family and dimensions (`data` gives the dataset)."""
    if config.get("discdiff_config"):
        return restore(config["discdiff_config"])
    algo = hf_format.MODEL_TYPES[config["model_type"]]
    dims = [f"model.{k}={v}" for k, v in hf_format.dims(config).items()]
    cfg = compose([f"algo={algo}", "model=hf_dit", f"model.pretrained={source}", *dims,
                   f"model.dropout={config.get('dropout', 0.1)}", f"data.length={config['model_length']}",
                   f"time_conditioning={str(bool(config.get('time_conditioning', algo == 'udlm'))).lower()}"])
    OmegaConf.set_struct(cfg, False)
    if data is not None:
        cfg.data = OmegaConf.merge(cfg.data, data, {"length": config["model_length"]})
    return cfg


def _tokenizer(folder: Path, config: dict, source: str):
    if (folder / TOKENIZER_FILE).is_file():
        return load_tokenizer(folder)
    if (folder / "vocab.txt").is_file():
        return BertTokenizer(folder / "vocab.txt")
    if config["vocab_size"] == BERT_VOCAB_SIZE:
        return BertTokenizer()
    raise ValueError(f"{source} ships no tokenizer and its {config['vocab_size']}-token vocabulary is not "
                     "bert-base-uncased's; put the tokenizer's files (vocab.txt or discdiff_tokenizer.json) "
                     "in its folder")


def write_folder(pipe: Pipeline, out, *, source, push_to_hub: Optional[str] = None) -> Path:
    """Write `pipe`'s model as the HuggingFace folder `out` (see the module docstring); with
    `push_to_hub`, upload it to that repository. Returns `out`."""
    backbone = pipe.lm.backbone
    if not isinstance(backbone, DiT):
        raise ValueError(f"export writes DiT backbones; {source} has a {type(backbone).__name__}")
    kind = hf_format.model_type(algo_name(pipe.cfg))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    config = hf_format.dit_config(backbone, kind=kind, length=pipe.cfg.data.length or backbone.length,
                               dropout=pipe.cfg.model.dropout)
    write_json(out / hf_format.CONFIG, {**config, "discdiff_config": OmegaConf.to_container(pipe.cfg),
                                     "discdiff_version": __version__})
    hf_format.write_weights(out, backbone)
    pipe.tokenizer.save(out)
    if hasattr(pipe.tokenizer, "save_pretrained"):  # a transformers tokenizer: AutoTokenizer files too
        pipe.tokenizer.save_pretrained(out)
    for code in REMOTE.glob("*.py"):
        shutil.copyfile(code, out / code.name)
    write_text(out / "README.md", _model_card(pipe, kind, source))
    if push_to_hub:
        _push(out, push_to_hub)
    return out


def _model_card(pipe: Pipeline, kind: str, source) -> str:
    return (f"# {FAMILY_NAMES[kind]} trained with discdiff\n\nExported by discdiff {__version__} from `{source}` "
            f"(checkpoint `{Path(pipe.checkpoint).name}`, EMA weights); dataset `{pipe.cfg.data.name}`, "
            f"length {pipe.cfg.data.length}.\n\n```python\nimport discdiff\nmodel = discdiff.load(\"<this folder or "
            "repo id>\")\nout = model.sample(16, steps=128, seed=0)\nprint(model.decode(out.tokens))\n```\n\n"
            "With transformers alone: `AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)`; "
            "its forward takes `(input_ids, timesteps=sigma, cond=labels)` and returns logits.\n")


def _push(folder: Path, repo: str) -> None:
    try:
        from huggingface_hub import HfApi  # only when a folder is pushed

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo)
    except Exception as err:
        raise ValueError(f"wrote {folder}, but pushing it to {repo} failed ({described(err)}); "
                         "push it later with `huggingface-cli upload`") from None
