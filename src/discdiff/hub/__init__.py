"""HuggingFace models in and out.

- `load(source)`: a model folder or hub id in the published UDLM / MDLM layout (`layout`), or one
  written by `export`, as a `Pipeline` (`discdiff.load` routes such sources here).
- `export(run, out, push_to_hub=None)`: a run's model (EMA weights) as a HuggingFace folder:
  config.json, model.safetensors (the published layout), tokenizer files, and the modelling code
  (`remote/`) that `AutoModelForMaskedLM.from_pretrained(out, trust_remote_code=True)` runs.
- `pretrained_dims(cfg)` / `pretrained_state(cfg)`: `model=hf_dit` fine-tuning from a published
  checkpoint (`model.pretrained`).

The hub is reached through `huggingface_hub` only when a source is not a local folder; when it
cannot be reached the refusal is one line.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from .. import __version__
from ..files import atomic_path, write_json, write_text
from . import layout

CONFIG, WEIGHTS, LEGACY_WEIGHTS = "config.json", "model.safetensors", "pytorch_model.bin"
REMOTE = Path(__file__).parent / "remote"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CLASSES = {"udlm": ("UDLMConfig", "UDLM", "AutoModelForMaskedLM"),
           "mdlm": ("MDLMConfig", "MDLM", "AutoModelForMaskedLM"),
           "discdiff_ar": ("ARConfig", "DiscdiffAR", "AutoModelForCausalLM")}


def is_model_folder(path) -> bool:
    """A folder holding a config.json of a model type discdiff reads."""
    config = Path(path) / CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in layout.FAMILIES
    except (OSError, ValueError, AttributeError):
        return False


def is_hub_id(source) -> bool:
    """'org/name' that is not a local path."""
    return isinstance(source, str) and bool(HUB_ID.match(source)) and not Path(source).exists()


def resolve(source) -> Path:
    """A local model folder for a folder path or a hub id (downloaded once into the HF cache)."""
    if Path(source).is_dir():
        return Path(source)
    if not is_hub_id(str(source)):
        raise ValueError(f"{source} is neither a model folder nor a HuggingFace hub id (org/name)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(source)))
    except Exception as err:  # offline, unknown repository, gated repository
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot fetch {source} from the HuggingFace hub ({type(err).__name__}: {first}); "
                         "download it where the hub is reachable and pass its folder instead") from None


def read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder / CONFIG} cannot be read: {err}") from None
    model_type = config.get("model_type")
    if model_type not in layout.FAMILIES:
        raise ValueError(f"{folder} holds a model of type {model_type!r}; discdiff reads: "
                         f"{', '.join(layout.FAMILIES)}")
    missing = [k for k in ("vocab_size", "model_length", "hidden_dim", "cond_dim", "n_blocks", "n_heads")
               if k not in config]
    if missing:
        raise ValueError(f"{folder / CONFIG} lacks {', '.join(missing)}")
    return config


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights (model.safetensors, else pytorch_model.bin) as a DiT state dict."""
    try:
        if (folder / WEIGHTS).is_file():
            from safetensors.torch import load_file

            state = load_file(folder / WEIGHTS)
        else:
            state = torch.load(folder / LEGACY_WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"the weights in {folder} cannot be read ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    return layout.from_upstream(state)


def _run_config(config: dict, source: str, data: Optional[DictConfig]) -> DictConfig:
    """The discdiff configuration of a model folder: the one it was exported with, or for a
    published checkpoint, its family and dimensions (`data` gives the dataset, e.g. for eval ppl)."""
    from ..config import compose, default_config

    if config.get("discdiff_config"):
        return OmegaConf.merge(default_config(), config["discdiff_config"])
    algo = layout.FAMILIES[config["model_type"]]
    dims = [f"model.{k}={v}" for k, v in layout.dims(config).items()]
    cfg = compose([f"algo={algo}", "model=hf_dit", f"model.pretrained={source}", *dims,
                   f"model.dropout={config.get('dropout', 0.1)}", f"data.length={config['model_length']}",
                   f"time_conditioning={str(bool(config.get('time_conditioning', algo == 'udlm'))).lower()}"])
    OmegaConf.set_struct(cfg, False)
    if data is not None:
        cfg.data = OmegaConf.merge(cfg.data, data, {"length": config["model_length"]})
    return cfg


def _tokenizer(folder: Path, config: dict, source: str):
    from ..data.tokenizers import TOKENIZER_FILE, BertTokenizer, load_tokenizer

    if (folder / TOKENIZER_FILE).is_file():
        return load_tokenizer(folder)
    if (folder / "vocab.txt").is_file():
        return BertTokenizer(folder / "vocab.txt")
    if config["vocab_size"] == 30522:  # bert-base-uncased, as the LM1B checkpoints use
        return BertTokenizer()
    raise ValueError(f"{source} ships no tokenizer and its {config['vocab_size']}-token vocabulary is not "
                     "bert-base-uncased's; put the tokenizer's files (vocab.txt or discdiff_tokenizer.json) "
                     "in its folder")


def num_classes(config: dict) -> Optional[int]:
    return config["cfg_num_classes"] if config.get("cfg") else None


def load(source, *, device=None, data: Optional[DictConfig] = None):
    """A `Pipeline` of a HuggingFace model folder or hub id (see the module docstring)."""
    from ..factory import build_language_model
    from ..pipeline import Pipeline
    from ..training.run import vocab_info

    folder = resolve(source)
    config = read_config(folder)
    cfg = _run_config(config, str(source), data)
    tokenizer = _tokenizer(folder, config, str(source))
    if tokenizer.vocab_size != config["vocab_size"]:
        raise ValueError(f"{source}: the tokenizer has {tokenizer.vocab_size} tokens, the model {config['vocab_size']}")
    lm = build_language_model(cfg, **vocab_info(tokenizer), num_classes=num_classes(config),
                              conditioning=config.get("conditioning", "silu_each"))
    _load_backbone(lm.backbone, read_weights(folder), str(source))
    return Pipeline(lm, tokenizer, cfg, folder, folder).to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _load_backbone(backbone, state: dict, source: str) -> None:
    try:
        backbone.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights of {source} do not fit its config.json: "
                         f"{str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else err}") from None


# ---------------------------------------------------------------------------------- export


def export(source, out, *, push_to_hub: Optional[str] = None, disable_ema: bool = False) -> Path:
    """Write the model of a run folder / checkpoint (EMA weights) as a HuggingFace folder `out`;
    with `push_to_hub`, upload it to that repository. Returns `out`."""
    from ..models import DiT
    from ..pipeline import load as load_run

    pipe = load_run(source, device="cpu", disable_ema=disable_ema)
    backbone = pipe.lm.backbone
    if not isinstance(backbone, DiT):
        raise ValueError(f"export writes DiT backbones; {source} has a {type(backbone).__name__}")
    model_type = _model_type(pipe.cfg)
    config_class, model_class, auto = CLASSES[model_type]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    classes = backbone.num_classes
    write_json(out / CONFIG, {
        "model_type": model_type, "architectures": [model_class],
        "auto_map": {"AutoConfig": f"configuration_discdiff.{config_class}", "AutoModel": f"modeling_discdiff.{model_class}",
                     auto: f"modeling_discdiff.{model_class}"},
        "vocab_size": backbone.vocab_size, "model_length": int(pipe.cfg.data.length or backbone.length),
        "hidden_dim": backbone.hidden_size, "cond_dim": backbone.cond_dim, "n_blocks": backbone.n_blocks,
        "n_heads": backbone.n_heads, "dropout": float(pipe.cfg.model.dropout),
        "time_conditioning": bool(backbone.time_conditioning), "cfg": classes is not None,
        "cfg_num_classes": classes if classes is not None else -1, "conditioning": backbone.conditioning_mode,
        "causal": bool(backbone.causal), "discdiff_config": OmegaConf.to_container(pipe.cfg),
        "discdiff_version": __version__})
    from safetensors.torch import save_file

    state = layout.to_upstream({k: v.contiguous() for k, v in backbone.state_dict().items()},
                               backbone.rotary.inv_freq.contiguous())
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    pipe.tokenizer.save(out)
    if hasattr(pipe.tokenizer, "_tok"):  # a transformers tokenizer: AutoTokenizer files too
        pipe.tokenizer._tok.save_pretrained(out)
    for code in REMOTE.glob("*.py"):
        shutil.copyfile(code, out / code.name)
    write_text(out / "README.md", _model_card(pipe, model_type, source))
    if push_to_hub:
        _push(out, push_to_hub)
    return out


def _model_type(cfg) -> str:
    if cfg.parameterization == "ar":
        return "discdiff_ar"
    return "udlm" if cfg.diffusion == "uniform" else "mdlm"


def _model_card(pipe, model_type: str, source) -> str:
    family = {"udlm": "UDLM (uniform-noise diffusion)", "mdlm": "MDLM (masked diffusion)",
              "discdiff_ar": "autoregressive"}[model_type]
    return (f"# {family} trained with discdiff\n\nExported by discdiff {__version__} from `{source}` "
            f"(checkpoint `{Path(pipe.checkpoint).name}`, EMA weights); dataset `{pipe.cfg.data.name}`, "
            f"length {pipe.cfg.data.length}.\n\n```python\nimport discdiff\nmodel = discdiff.load(\"<this folder or "
            "repo id>\")\nout = model.sample(16, steps=128, seed=0)\nprint(model.decode(out.tokens))\n```\n\n"
            "With transformers alone: `AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)`; "
            "its forward takes `(input_ids, timesteps=sigma, cond=labels)` and returns logits.\n")


def _push(folder: Path, repo: str) -> None:
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"wrote {folder}, but pushing it to {repo} failed ({type(err).__name__}: {first}); "
                         "push it later with `huggingface-cli upload`") from None


# ------------------------------------------------------------------------- fine-tuning


def pretrained_dims(source) -> dict:
    """{hidden_size, n_blocks, n_heads, cond_dim, vocab_size, model_length, model_type} of a
    published checkpoint, for `model=hf_dit`."""
    config = read_config(resolve(source))
    return {**layout.dims(config), "vocab_size": config["vocab_size"], "model_length": config["model_length"],
            "model_type": config["model_type"], "num_classes": num_classes(config)}


def pretrained_state(source) -> dict[str, torch.Tensor]:
    """The DiT state dict of a published checkpoint (the starting weights of `model=hf_dit`)."""
    return read_weights(resolve(source))
