"""Guidance of autoregressive models, and the hidden-state methods (NOS, PPLM).

An exact AR model and an exact prefix classifier of a toy problem (two tokens over V = 3, so
9 sequences) make FUDGE (top-k = V) and D-CFG with gamma = 1 sample p(x | y) exactly, and gamma = 0
p(x): AR decoding has no discretisation, so the chi-square test needs no step count."""


import pytest
import torch
from torch import nn

from discdiff.guidance import CBG, CFG, FUDGE, NOS, PPLM
from discdiff.guidance.hidden import perturb_hidden
from discdiff.lm import AutoregressiveLM, DiffusionLM
from discdiff.models import DiT, HiddenStateClassifier
from discdiff.processes import AbsorbingProcess, UniformProcess
from discdiff.sampling import sample
from discdiff.sampling.autoregressive import sample_autoregressive
from discdiff.schedules import LogLinear

V_DATA, BOS, TARGET, NULL = 3, 3, 1, 2
CHI2_DF8_P001 = 26.12


class TableAR(nn.Module):
    """An exact causal model over (BOS, x1, x2): next-token logits from the joint table of the
    label (y = 0, y = 1, or the null label: the marginal), with BOS never emitted."""

    causal, hidden_size = True, 1

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.prior = torch.rand(V_DATA, V_DATA, generator=g, dtype=torch.float64) + 0.2
        self.prior /= self.prior.sum()
        self.p_y = 0.05 + 0.9 * torch.rand(V_DATA, V_DATA, generator=g, dtype=torch.float64)  # p(y=1 | x1, x2)
        joint1 = self.prior * self.p_y
        self.joints = torch.stack([self.prior - joint1, joint1, self.prior])  # by label 0, 1, null
        self.joints /= self.joints.sum((1, 2), keepdim=True)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, sigma=None, cond=None, *, return_hidden=False, kv_cache=None):
        b, i = x.shape
        labels = torch.full((b,), NULL) if cond is None else cond
        joint = self.joints[labels]  # (B, V, V)
        if i == 1:
            p = joint.sum(2)
        else:
            p = joint[torch.arange(b), x[:, 1]]
        logits = torch.full((b, i, V_DATA + 1), float("-inf"), dtype=torch.float64)
        logits[:, -1, :V_DATA] = torch.log(p / p.sum(-1, keepdim=True))
        return (logits, torch.zeros(b, i, 1)) if return_hidden else logits

    def prefix_classifier(self, x, sigma=None):
        """Exact log p(y | BOS, x1[, x2]) (B, 2)."""
        if x.shape[1] == 2:
            p1 = (self.prior * self.p_y).sum(1)[x[:, 1]] / self.prior.sum(1)[x[:, 1]]
        else:
            p1 = self.p_y[x[:, 1], x[:, 2]]
        return torch.log(torch.stack([1 - p1, p1], -1))

    def histogram(self, tokens):
        return torch.bincount(tokens[:, 1] * V_DATA + tokens[:, 2], minlength=9).double()

    def target(self, label):
        return self.joints[label].flatten()


def chi_square(counts, probs):
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def draw(model, guidance, n=20_000):
    out = sample_autoregressive(model, n, 3, BOS, guidance=guidance, use_cache=False,
                                generator=torch.Generator().manual_seed(1))
    assert (out.tokens[:, 1:] < V_DATA).all()
    return model.histogram(out.tokens)


@pytest.mark.parametrize("method", ["fudge", "cfg"])
def test_ar_guidance_with_gamma_one_samples_the_conditional(method):
    toy = TableAR()
    make = {"fudge": lambda g: FUDGE(toy.prefix_classifier, g, TARGET, topk=V_DATA),
            "cfg": lambda g: CFG(g, TARGET, NULL)}[method]
    assert chi_square(draw(toy, make(1.0)), toy.target(TARGET)) < CHI2_DF8_P001
    assert chi_square(draw(toy, make(0.0)), toy.target(NULL)) < CHI2_DF8_P001
    assert chi_square(20_000 * toy.target(TARGET), toy.target(NULL)) > 10 * CHI2_DF8_P001


def test_fudge_keeps_only_the_top_k_tokens():
    toy = TableAR()
    counts = draw(toy, FUDGE(toy.prefix_classifier, 0.0, TARGET, topk=1), n=200)
    top1 = torch.log(toy.target(NULL).view(V_DATA, V_DATA))
    first = int(top1.logsumexp(1).argmax())
    assert counts.view(V_DATA, V_DATA)[first].sum() == 200 and (counts > 0).sum() == 1


def causal_dit(num_classes=None, seed=0) -> DiT:
    torch.manual_seed(seed)
    model = DiT(11, 8, hidden_size=32, n_blocks=2, n_heads=4, cond_dim=16, dropout=0.0, causal=True,
                num_classes=num_classes, time_conditioning=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def test_ar_cfg_matches_conditional_sampling_and_caches_agree():
    model = causal_dit(num_classes=2)
    run = lambda **kw: sample_autoregressive(model, 6, 8, 0, generator=torch.Generator().manual_seed(3), **kw)
    conditional = run(cond=1).tokens
    assert torch.equal(run(guidance=CFG(1.0, 1, 2)).tokens, conditional)
    assert torch.equal(run(guidance=CFG(0.0, 1, 2)).tokens, run().tokens)
    cached, uncached = run(guidance=CFG(3.0, 1, 2)), run(guidance=CFG(3.0, 1, 2), use_cache=False)
    assert torch.equal(cached.tokens, uncached.tokens) and cached.nfe == 7  # one batched pass per token


def test_perturb_hidden_raises_the_classifier_score_and_the_kl_restrains_it():
    torch.manual_seed(0)
    head, clf = nn.Linear(16, 5), nn.Linear(16, 2)
    hidden = torch.randn(4, 3, 16)
    classify = lambda h: clf(h.mean(1)).log_softmax(-1)
    run = lambda gamma, stability: perturb_hidden(hidden, head, classify, 1, gamma=gamma, num_steps=10,
                                                  step_size=0.02, stability=stability)
    assert torch.equal(run(0.0, 0.1), hidden)
    weak, strong, held = run(1.0, 0.0), run(3.0, 0.0), run(1.0, 20.0)
    score = lambda h: classify(h)[:, 1]
    assert (score(hidden) < score(weak)).all() and (score(weak) < score(strong)).all()
    kl = lambda h: (head(h).log_softmax(-1).exp() * (head(h).log_softmax(-1) - head(hidden).log_softmax(-1))).sum()
    assert kl(held) < 0.2 * kl(weak)


def test_pplm_with_gamma_zero_is_the_model_and_moves_it_otherwise():
    lm = AutoregressiveLM(causal_dit(), 8, 0)
    head = HiddenStateClassifier(lm, 2)
    torch.nn.init.normal_(head.linear.weight, std=1.0)
    run = lambda g: sample_autoregressive(lm.backbone, 64, 8, 0, guidance=PPLM(head, g, 1, num_steps=3, step_size=2.0),
                                          generator=torch.Generator().manual_seed(3)).tokens
    assert torch.equal(run(0.0), sample_autoregressive(lm.backbone, 64, 8, 0,
                                                       generator=torch.Generator().manual_seed(3)).tokens)
    assert not torch.equal(run(5.0), run(0.0))


def random_diffusion_lm(process) -> tuple[DiffusionLM, HiddenStateClassifier]:
    """A small DiT diffusion model of length 8 with random weights (not the adaLN-zero start, so its
    output depends on its input) and a random NOS head on it."""
    torch.manual_seed(0)
    backbone = DiT(process.vocab_size, 8, hidden_size=32, n_blocks=2, n_heads=4, cond_dim=16, dropout=0.0)
    for p in backbone.parameters():
        torch.nn.init.normal_(p, std=0.2)
    lm = DiffusionLM(backbone, process, LogLinear(), 8).eval()
    return lm, HiddenStateClassifier(lm, 2)


@pytest.mark.parametrize("process", [UniformProcess(10), AbsorbingProcess(11, 10)], ids=["uniform", "absorbing"])
def test_nos_with_gamma_zero_is_unguided_and_moves_it_otherwise(process):
    lm, head = random_diffusion_lm(process)
    run = lambda guidance: sample(process, LogLinear(), lm.denoiser, (32, 8), 16, guidance=guidance,
                                  generator=torch.Generator().manual_seed(5)).tokens
    plain = run(CBG(lambda x, s: None, 0.0, 1))  # gamma = 0: the unguided posterior, drawn the same way
    assert torch.equal(run(NOS(head, 0.0, 1)), plain)
    assert not torch.equal(run(NOS(head, 5.0, 1, num_steps=2, step_size=2.0)), plain)
    with pytest.raises(ValueError, match="does not apply to diffusion"):
        run(PPLM(head, 1.0, 1))


@pytest.mark.parametrize("kind", ["dit", "dimamba"])
def test_prefix_classifier_continuations_match_full_sequences(kind):
    from discdiff.models import SequenceClassifier, build_backbone
    from discdiff.models.dimamba import build_dimamba

    torch.manual_seed(0)
    options = dict(causal=True, time_conditioning=False, dropout=0.0)
    if kind == "dimamba":
        encoder = build_dimamba(dict(n_blocks=2, hidden_size=32, cond_dim=16, d_state=4, chunk_size=4), 11, 8, **options)
    else:
        encoder = build_backbone(dict(n_blocks=2, hidden_size=32, n_heads=4, cond_dim=16), 11, 8, **options)
    clf = SequenceClassifier(encoder, 2).eval()
    for p in clf.parameters():
        torch.nn.init.normal_(p, std=0.3)
    prefix, tokens = torch.randint(0, 11, (3, 5)), torch.randint(0, 11, (3, 4))
    fast = clf.continuation_log_probs(prefix, tokens)  # (3, 4, 2)
    full = clf(torch.cat([prefix.repeat_interleave(4, 0), tokens.reshape(-1, 1)], 1)).view(3, 4, 2)
    assert torch.allclose(fast, full, atol=1e-5)
    per_position = clf.training_log_probs(torch.cat([prefix, tokens[:, :1]], 1))  # (3, 6, 2)
    assert torch.allclose(per_position[:, -1], fast[:, 0], atol=1e-5)
