"""The HuggingFace model folder, read and written: config.json, the weights (model.safetensors, or
pytorch_model.bin read as tensors only), hub ids and their download.

config.json holds the fields of the published UDLM / MDLM checkpoints: `model_type` ("udlm" |
"mdlm", and "discdiff_ar" for discdiff's autoregressive models), `vocab_size`, `model_length`,
`hidden_dim`, `cond_dim`, `n_blocks`, `n_heads`, `dropout`, `time_conditioning`, `cfg`,
`cfg_num_classes`; discdiff's own exports add `conditioning`, `causal`, `discdiff_config` (the
run's configuration) and `discdiff_version`. The weights are a DiT's under the published names
(`weight_names`).

The hub is reached through `huggingface_hub` only when a source is not a local folder; when it
cannot be reached the refusal is one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from ..errors import described
from ..files import atomic_path
from . import weight_names

CONFIG, WEIGHTS, LEGACY_WEIGHTS = "config.json", "model.safetensors", "pytorch_model.bin"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: config.json model_type -> the algo (`algo=`) of that family
MODEL_TYPES = {"udlm": "udlm", "mdlm": "mdlm", "discdiff_ar": "ar"}
#: model_type -> (configuration class, model class, Auto class) of the modelling code in `remote/`
AUTO_CLASSES = {"udlm": ("UDLMConfig", "UDLM", "AutoModelForMaskedLM"),
                "mdlm": ("MDLMConfig", "MDLM", "AutoModelForMaskedLM"),
                "discdiff_ar": ("ARConfig", "DiscdiffAR", "AutoModelForCausalLM")}
REQUIRED = ("vocab_size", "model_length", "hidden_dim", "cond_dim", "n_blocks", "n_heads")


def model_type(algo: str) -> str:
    """The config.json model_type of an algo (ar, mdlm, udlm)."""
    return next(t for t, a in MODEL_TYPES.items() if a == algo)


def is_model_folder(path) -> bool:
    """A folder holding a config.json of a model type discdiff reads."""
    config = Path(path) / CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in MODEL_TYPES
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
        from huggingface_hub import snapshot_download  # only when a hub id is fetched

        return Path(snapshot_download(str(source)))
    except Exception as err:  # offline, unknown repository, gated repository
        raise ValueError(f"cannot fetch {source} from the HuggingFace hub ({described(err)}); "
                         "download it where the hub is reachable and pass its folder instead") from None


def read_config(folder: Path) -> dict:
    """The folder's config.json, checked to be of a family discdiff reads with every dimension."""
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder / CONFIG} cannot be read: {err}") from None
    kind = config.get("model_type")
    if kind not in MODEL_TYPES:
        raise ValueError(f"{folder} holds a model of type {kind!r}; discdiff reads: {', '.join(MODEL_TYPES)}")
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(f"{folder / CONFIG} lacks {', '.join(missing)}")
    return config


def dims(config: dict) -> dict:
    """DiT dimensions of a config.json."""
    return {"hidden_size": config["hidden_dim"], "n_blocks": config["n_blocks"], "n_heads": config["n_heads"],
            "cond_dim": config["cond_dim"]}


def num_classes(config: dict) -> Optional[int]:
    """The label classes of a conditional model's config.json (None: unconditional)."""
    return config["cfg_num_classes"] if config.get("cfg") else None


def dit_config(backbone, *, kind: str, length: int, dropout: float) -> dict:
    """The config.json fields of a DiT exported as model_type `kind`."""
    classes = backbone.num_classes
    config_class, model_class, auto = AUTO_CLASSES[kind]
    return {"model_type": kind, "architectures": [model_class],
            "auto_map": {"AutoConfig": f"configuration_discdiff.{config_class}",
                         "AutoModel": f"modeling_discdiff.{model_class}", auto: f"modeling_discdiff.{model_class}"},
            "vocab_size": backbone.vocab_size, "model_length": int(length), "hidden_dim": backbone.hidden_size,
            "cond_dim": backbone.cond_dim, "n_blocks": backbone.n_blocks, "n_heads": backbone.n_heads,
            "dropout": float(dropout), "time_conditioning": bool(backbone.time_conditioning),
            "cfg": classes is not None, "cfg_num_classes": classes if classes is not None else -1,
            "conditioning": backbone.conditioning_mode, "causal": bool(backbone.causal)}


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights (model.safetensors, else pytorch_model.bin read as tensors only) as a
    DiT state dict."""
    try:
        if (folder / WEIGHTS).is_file():
            state = load_file(folder / WEIGHTS)
        else:
            state = torch.load(folder / LEGACY_WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"the weights in {folder} cannot be read ({described(err)})") from None
    return weight_names.from_upstream(state)


def write_weights(folder: Path, backbone) -> None:
    """A DiT's weights as folder/model.safetensors under the published names, atomically."""
    state = weight_names.to_upstream({k: v.contiguous() for k, v in backbone.state_dict().items()},
                                     backbone.rotary.inv_freq.contiguous())
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})


def pretrained_dims(source) -> dict:
    """{hidden_size, n_blocks, n_heads, cond_dim, vocab_size, model_length, model_type,
    num_classes} of a published checkpoint, for `model=hf_dit`."""
    config = read_config(resolve(source))
    return {**dims(config), "vocab_size": config["vocab_size"], "model_length": config["model_length"],
            "model_type": config["model_type"], "num_classes": num_classes(config)}


def pretrained_state(source) -> dict[str, torch.Tensor]:
    """The DiT state dict of a published checkpoint (the starting weights of `model=hf_dit`)."""
    return read_weights(resolve(source))
