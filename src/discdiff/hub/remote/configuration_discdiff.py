"""Configuration of a discdiff DiT exported to the HuggingFace format (`discdiff export`).

The fields are those of the published UDLM / MDLM checkpoints, plus `conditioning` (how the time
and label embeddings join: "silu_sum" for discdiff's own models, "silu_each" for the published
ones), `causal` (an autoregressive model) and `discdiff_config` (the training run's resolved
configuration, so `discdiff.load(folder)` rebuilds the whole model family: process, noise
schedule, parameterisation). This file is shipped inside every exported folder and read with
`trust_remote_code=True`; it needs only `transformers`.
"""

from transformers import PretrainedConfig


class DiscdiffConfig(PretrainedConfig):
    """Shared by the three families; `model_type` names the family (UDLMConfig, MDLMConfig, ARConfig)."""

    model_type = "udlm"

    def __init__(self, vocab_size: int = 30522, model_length: int = 128, hidden_dim: int = 768, cond_dim: int = 128,
                 n_blocks: int = 12, n_heads: int = 12, dropout: float = 0.1, time_conditioning: bool = True,
                 cfg: bool = False, cfg_num_classes: int = -1, conditioning: str = "silu_each",
                 causal: bool = False, discdiff_config: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.model_length = vocab_size, model_length
        self.hidden_dim, self.cond_dim, self.n_blocks, self.n_heads = hidden_dim, cond_dim, n_blocks, n_heads
        self.dropout, self.time_conditioning = dropout, time_conditioning
        self.cfg, self.cfg_num_classes = cfg, cfg_num_classes
        self.conditioning, self.causal = conditioning, causal
        self.discdiff_config = discdiff_config


class UDLMConfig(DiscdiffConfig):
    model_type = "udlm"


class MDLMConfig(DiscdiffConfig):
    model_type = "mdlm"


class ARConfig(DiscdiffConfig):
    model_type = "discdiff_ar"
