"""The EMA of the weights: warm-up decay, swap, state round trip, sharded parameters."""

import copy
from contextlib import contextmanager

import pytest
import torch

from discdiff.ema import EMA


def test_ema_warms_up_and_tracks_the_weights():
    net = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = EMA(net, decay=0.999)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for _ in range(100):
        ema.update(net)
    # constant decay 0.999 would still hold 0.999^100 = 90% of the initial zeros
    assert float(ema.shadow[0].mean()) > 0.85
    ema.swap(net)
    assert float(net.weight.mean()) > 0.85  # the EMA weights are live now
    assert torch.allclose(ema.shadow[0], torch.ones(1, 3))  # the live weights moved into the shadow
    ema.swap(net)
    assert torch.allclose(net.weight, torch.ones(1, 3))


def test_ema_state_round_trip():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.99)
    ema.update(net)
    other = EMA(net, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.99 and other.num_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(other.shadow, ema.shadow))


class FlatShards:
    """What FSDP (use_orig_params) does to a module's parameters outside its forward, on one rank:
    each parameter's data becomes a flat (1-D) view of its values; `whole(writeback)` shows them in
    their shapes (as summon_full_params does), writing changes back only with writeback."""

    def __init__(self, module: torch.nn.Module):
        self.params = list(module.parameters())
        self.shapes = [p.shape for p in self.params]
        for p in self.params:
            p.data = p.data.reshape(-1)

    @contextmanager
    def whole(self, writeback: bool):
        flats = [p.data for p in self.params]
        for p, shape in zip(self.params, self.shapes):
            p.data = p.data.reshape(shape) if writeback else p.data.clone().reshape(shape)
        try:
            yield
        finally:
            for p, flat in zip(self.params, flats):
                p.data = flat


def test_ema_of_sharded_parameters_gathers_and_scatters_whole_tensors():
    """Under FSDP the EMA averages each rank's shard (`reshard`), checkpoints the whole average
    (`gathered_state_dict`) and loads it back into shards (`load_gathered_state_dict`), leaving the
    live weights alone; compared with the EMA of the same module unsharded."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    reference_net = copy.deepcopy(net)
    ema, reference = EMA(net, 0.9), EMA(reference_net, 0.9)
    shards = FlatShards(net)
    ema.reshard(net)
    assert [s.dim() for s in ema.shadow] == [1] * 4
    for step in range(3):
        with torch.no_grad():
            for p, q in zip(net.parameters(), reference_net.parameters()):
                q.add_(step + 1.0)
                p.add_(step + 1.0)
        ema.update(net)
        reference.update(reference_net)
    live = [p.detach().clone() for p in net.parameters()]
    state = ema.gathered_state_dict(net, shards.whole)
    for got, want in zip(state["shadow"], reference.shadow):
        torch.testing.assert_close(got, want)  # whole tensors, in the parameters' shapes
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), live))

    fresh = EMA(net, 0.9)  # a restarted rank: built before sharding, then loaded
    fresh.load_gathered_state_dict(state, net, shards.whole)
    for got, want in zip(fresh.shadow, ema.shadow):
        torch.testing.assert_close(got, want)  # this rank's shard
    assert fresh.num_updates == 3
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), live))
    stale = EMA(reference_net, 0.9)  # whole-shaped, and averaging already: cannot follow shards
    stale.update(reference_net)
    with pytest.raises(ValueError, match="no longer matches"):
        stale.reshard(net)
