"""The EMA of the weights: warm-up decay, swap, state round trip."""

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
