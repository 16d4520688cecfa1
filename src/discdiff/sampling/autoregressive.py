"""Left-to-right sampling from a causal DiT, optionally guided.

Every sequence starts with ``bos_id``; the remaining ``length - 1`` tokens are drawn one at a time
with the Gumbel-max trick (``argmax(log_p / T + G)``, ``G ~ Gumbel(0, 1)`` from the given
``torch.Generator``), or greedily. ``log_p`` is the model's next-token distribution, or the one a
guidance strategy (``discdiff.guidance``: CFG, FUDGE, PPLM) makes of a `TokenStep`.

Decoding is incremental: each stack of label rows a strategy asks for (the plain batch; CFG's
[y, null] stack) keeps its own KV cache, so every step feeds only the new token to the network.
"""

from __future__ import annotations

from typing import Optional

import torch
from tqdm.auto import tqdm

from ..guidance import Guidance, TokenStep
from ..guidance.base import AUTOREGRESSIVE
from ..processes import sample_categorical
from ..processes.base import nucleus
from .diffusion import SampleOutput


def _labels(cond, batch_size: int, device) -> torch.Tensor | None:
    """cond as None, an int, or (B,) ids -> None or a (B,) LongTensor."""
    if cond is None:
        return None
    cond = torch.as_tensor(cond, dtype=torch.long, device=device).reshape(-1)
    return cond.expand(batch_size) if cond.numel() == 1 else cond


class IncrementalDecoder:
    """Next-token logits of a causal model for growing prefixes, one KV cache per key.

    A key's first call fixes its batch of rows; later calls feed only the positions added since
    its previous call. With ``use_cache=False`` every call recomputes the whole prefix (the
    reference path). Hidden states are kept per key when first asked for with ``hidden=True``.

    On CUDA, a model with static KV caches (``model.static_kv_cache``) decodes each one-token step
    by replaying a CUDA graph of it (`GraphedDecodeStep`): the step's few hundred small kernels cost
    one launch instead of their Python dispatch, which dominates at decoding's small batches.
    """

    def __init__(self, model, length: int, use_cache: bool = True):
        self.model, self.length, self.use_cache = model, length, use_cache
        self.caches: dict[str, object] = {}
        self.hiddens: dict[str, torch.Tensor] = {}
        self.graphs: dict[str, GraphedDecodeStep] = {}
        device = next(model.parameters()).device
        self.use_graphs = use_cache and device.type == "cuda" and getattr(model, "static_kv_cache", False)

    @torch.no_grad()
    def _run(self, prefix: torch.Tensor, labels, key: str, hidden: bool):
        i = prefix.shape[1]
        if not self.use_cache:
            logits, h = self.model(prefix, None, labels, return_hidden=True)
            return logits[:, -1].float(), h
        if key not in self.caches:
            kwargs = {"static": True} if self.use_graphs else {}
            self.caches[key] = self.model.new_kv_cache(prefix.shape[0], self.length, prefix.device, **kwargs)
            if hidden:
                self.hiddens[key] = prefix.new_zeros((prefix.shape[0], self.length, self.model.hidden_size),
                                                     dtype=torch.float32)
        cache = self.caches[key]
        start = cache.length
        new = prefix[:, start:i]
        if self.use_graphs and new.shape[1] == 1 and start > 0:
            if key not in self.graphs:
                self.graphs[key] = GraphedDecodeStep(self.model, cache, labels)
            logits, h = self.graphs[key](new, labels)
        else:
            logits, h = self.model(new, None, labels, kv_cache=cache, return_hidden=True)
        if key in self.hiddens:
            self.hiddens[key][:, start:i] = h.float()
        elif hidden:
            raise ValueError(f"decoder '{key}' was started without hidden states")
        return logits[:, -1].float(), self.hiddens[key][:, :i] if hidden else None

    def logits(self, prefix: torch.Tensor, labels, key: str) -> torch.Tensor:
        """fp32 logits (B, V) of the token after `prefix` (B, i)."""
        return self._run(prefix, labels, key, hidden=False)[0]

    def logits_and_hidden(self, prefix: torch.Tensor, labels, key: str):
        """(fp32 logits (B, V), fp32 last hidden states of the prefix (B, i, D))."""
        logits, h = self._run(prefix, labels, key, hidden=True)
        return logits, h.float()


class GraphedDecodeStep:
    """``model(token (B, 1), None, labels, kv_cache=cache, return_hidden=True)`` captured once as a
    CUDA graph over a static cache, then replayed for every later token of that cache.

    The graph reads the token and labels from its own input buffers and the cache's device-side
    position, writes the new keys there and advances it; the Python-side length is kept in step
    here. Outputs live in the graph's buffers and are overwritten by the next replay. Captured
    under the caller's autocast setting with autocast's weight cache off (a cached cast would be
    freed when the caller's autocast region ends, under the graph's feet)."""

    def __init__(self, model, cache, labels):
        self.cache = cache
        self.token = torch.zeros((cache.batch_size, 1), dtype=torch.long, device=cache.position.device)
        self.labels = None if labels is None else labels.clone()
        length, autocast = cache.length, _autocast_state()

        def step():
            with torch.autocast("cuda", **autocast, cache_enabled=False):
                return model(self.token, None, self.labels, kv_cache=cache, return_hidden=True)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up before capture, as CUDA graphs require
            for _ in range(2):
                step()
                cache.rewind(length)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits, self.hidden = step()
        cache.rewind(length)  # capture ran no kernel, but counted the token on the host

    def __call__(self, token: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache.length >= self.cache.max_length:
            raise ValueError(f"KV cache overflow: {self.cache.length + 1} positions > max_length "
                             f"{self.cache.max_length}")
        self.token.copy_(token)
        if labels is not None:
            self.labels.copy_(labels)
        self.graph.replay()
        self.cache.length += 1  # the replay advanced the device-side position
        return self.logits.clone(), self.hidden.clone()


def _autocast_state() -> dict:
    return {"enabled": torch.is_autocast_enabled("cuda"), "dtype": torch.get_autocast_dtype("cuda")}


def sample_autoregressive(
    model,
    num_samples: int,
    length: int,
    bos_id: int,
    *,
    cond=None,
    guidance: Optional[Guidance] = None,
    use_cache: bool = True,
    argmax: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    float64: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> SampleOutput:
    """Generate ``num_samples`` sequences of ``length`` tokens (BOS included).

    Args:
        model: causal DiT (``model.causal``), called as ``model(x, None, cond)``.
        cond: None, an int or (B,) class ids passed to the model on every call.
        guidance: a strategy for autoregressive models (CFG, FUDGE, PPLM); None samples the model.
        use_cache: incremental decoding with KV caches; False recomputes the whole prefix each
            step (the reference path).
        argmax: greedy decoding instead of sampling.
        temperature: log-probabilities are divided by it before sampling.
        top_p: nucleus of each (guided, tempered) next-token distribution (1: all tokens).
        float64: draw with float64 log-probabilities and Gumbel noise (float32 noise truncates the
            tails of large vocabularies).
        generator: torch.Generator for the Gumbel noise (any device).
        progress: show a tqdm bar.

    Returns:
        SampleOutput with tokens (B, length) and nfe, the number of network calls (length - 1
        unguided; a strategy's extra or batched calls count once each).
    """
    if not getattr(model, "causal", False):
        raise ValueError("sample_autoregressive needs a causal model")
    if not argmax and temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); use argmax=True")
    if not 0 < top_p <= 1:
        raise ValueError(f"sampling.top_p must be in (0, 1], got {top_p}")
    if guidance is not None:
        guidance.check_family(AUTOREGRESSIVE)
    device = next(model.parameters()).device
    tokens = torch.full((num_samples, length), bos_id, dtype=torch.long, device=device)
    labels = _labels(cond, num_samples, device)
    decoder = IncrementalDecoder(model, length, use_cache)
    was_training, nfe = model.training, 0
    model.eval()
    try:
        for i in tqdm(range(1, length), disable=not progress, desc="AR sampling"):
            step = TokenStep(tokens[:, :i], decoder.logits, decoder.logits_and_hidden, labels)
            log_p = step.log_probs() if guidance is None else guidance.log_probs(step)
            nfe += step.nfe
            if float64:
                log_p = log_p.double()
            if argmax:
                tokens[:, i] = log_p.argmax(-1)
                continue
            scaled = log_p / temperature
            scaled = scaled if top_p >= 1 else nucleus(scaled.log_softmax(-1), top_p)
            tokens[:, i] = sample_categorical(scaled, generator)
    finally:
        model.train(was_training)
    return SampleOutput(tokens=tokens, nfe=nfe)
