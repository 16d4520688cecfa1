"""Exponential moving average of the weights: theta_ema <- d_n theta_ema + (1 - d_n) theta.

Under FSDP each rank averages its own shard of the parameters (`reshard`), and checkpoints hold
the whole average (`gathered_state_dict`, `load_gathered_state_dict`).

The EMA starts at the initial (untrained) weights, so a constant decay d would keep a share d^n of
them after n updates (0.999^2400 = 9%: visibly worse samples from a short run). The decay
therefore warms up, d_n = min(d, (1 + n) / (10 + n)), and early averages forget the
initialisation quickly.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """Shadow copies of a module's trainable floating-point parameters (frozen ones, such as the
    generator inside a NOS / PPLM head, never change), updated after each optimizer step."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay, self.num_updates = decay, 0
        self.shadow = [p.detach().clone().float() for p in self._params(module)]

    @staticmethod
    def _params(module: nn.Module):
        return [p for p in module.parameters() if p.dtype.is_floating_point and p.requires_grad]

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        params = self._params(module)
        if self.shadow[0].device != params[0].device:
            self.shadow = [s.to(params[0].device) for s in self.shadow]
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in params], 1 - decay)

    @torch.no_grad()
    def swap(self, module: nn.Module) -> None:
        """Exchange the live weights and the EMA weights (calling it twice restores both)."""
        for p, s in zip(self._params(module), self.shadow):
            live = p.detach().clone()
            p.copy_(s.to(p.device, p.dtype))
            s.copy_(live.to(s.device, s.dtype))

    @contextmanager
    def applied(self, module: nn.Module):
        """Temporarily load the EMA weights into `module` (for validation, sampling, export)."""
        self.swap(module)
        try:
            yield module
        finally:
            self.swap(module)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for p, s in zip(self._params(module), self.shadow):
            p.copy_(s.to(p.device, p.dtype))

    def reshard(self, module: nn.Module) -> None:
        """Follow parameters sharded after this EMA was made (FSDP wraps the model after it is
        built, and each rank then holds a flat shard of every parameter): before the first update
        the shadow becomes a copy of the local shards. Nothing changes when the shapes match."""
        params = self._params(module)
        if all(s.shape == p.shape for s, p in zip(self.shadow, params)):
            return
        if self.num_updates:
            raise ValueError("the EMA no longer matches the parameters' shapes after it began averaging")
        self.shadow = [p.detach().clone().float() for p in params]

    @torch.no_grad()
    def gathered_state_dict(self, module: nn.Module, whole) -> dict:
        """`state_dict` with whole tensors from a sharded module: `whole(writeback=...)` is a
        context in which the module's parameters are whole on every rank (FSDP's
        summon_full_params; every rank must call). The EMA shards are swapped into the parameters
        for the gather and swapped back."""
        with self.applied(module), whole(writeback=False):
            shadow = [p.detach().float().cpu().clone() for p in self._params(module)]
        return {**self.state_dict(), "shadow": shadow}

    @torch.no_grad()
    def load_gathered_state_dict(self, state: dict, module: nn.Module, whole) -> None:
        """Load whole tensors (`gathered_state_dict`, `state_dict` of an unsharded run) into a
        sharded module's EMA, each rank keeping its shard; the live weights are left as they were."""
        with whole(writeback=True):
            params = self._params(module)
            live = [p.detach().clone() for p in params]
            for p, s in zip(params, state["shadow"]):
                p.copy_(s.to(p.device, p.dtype))
        shards = [p.detach().clone().float() for p in self._params(module)]
        with whole(writeback=True):
            for p, weights in zip(self._params(module), live):
                p.copy_(weights)
        self.load_state_dict({**state, "shadow": shards})

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": [s.cpu() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError(f"EMA state has {len(state['shadow'])} tensors, the model {len(self.shadow)}")
        device = self.shadow[0].device
        self.decay, self.num_updates = state["decay"], state.get("num_updates", 0)
        self.shadow = [s.to(device) for s in state["shadow"]]
