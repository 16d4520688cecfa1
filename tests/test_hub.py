"""HuggingFace interop: checkpoints in the published UDLM / MDLM layout load with the logits of
that architecture (checked against an independent re-implementation of its forward pass),
`discdiff export` folders load in transformers (fresh process) and back in discdiff with identical
samples, fine-tuning starts from the published weights, and an unreachable hub is one line."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import SAMPLES
from discdiff.hub import weight_names
import discdiff
from discdiff.cli import main


# ------------------------------------------------------- the published architecture, re-derived


def reference_logits(w: dict, config: dict, ids, sigma, cond=None):
    """The published DiT forward (config.json + backbone.* weights), written from its description."""
    p = lambda name: w[f"backbone.{name}"]  # noqa: E731
    d, heads = config["hidden_dim"], config["n_heads"]
    if not config["time_conditioning"]:
        sigma = torch.zeros_like(sigma)
    half = 128
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    args = sigma[:, None] * freqs[None]
    t = torch.cat([args.cos(), args.sin()], -1)
    t = F.linear(F.silu(F.linear(t, p("sigma_map.mlp.0.weight"), p("sigma_map.mlp.0.bias"))),
                 p("sigma_map.mlp.2.weight"), p("sigma_map.mlp.2.bias"))
    c = F.silu(t)
    if cond is not None:
        c = c + F.silu(p("cond_map.embedding_table.weight")[cond])

    def ln(x, weight, shift, scale):
        return F.layer_norm(x, (d,)) * weight * (1 + scale[:, None]) + shift[:, None]

    def rotate(x):  # (B, L, H, Dh), rotate-half with base 10000
        dh = x.shape[-1]
        inv = 1.0 / 10000 ** (torch.arange(0, dh, 2).float() / dh)
        ang = torch.arange(x.shape[1]).float()[:, None] * inv[None]
        cos, sin = torch.cat([ang, ang], -1).cos()[None, :, None], torch.cat([ang, ang], -1).sin()[None, :, None]
        x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    h = p("vocab_embed.embedding")[ids]
    b, n = ids.shape
    for i in range(config["n_blocks"]):
        q = lambda name: p(f"blocks.{i}.{name}")  # noqa: E731
        mods = F.linear(c, q("adaLN_modulation.weight"), q("adaLN_modulation.bias")).chunk(6, -1)
        x = ln(h, q("norm1.weight"), mods[0], mods[1])
        qkv = (x @ q("attn_qkv.weight").T).view(b, n, 3, heads, d // heads)
        qq, kk, vv = rotate(qkv[:, :, 0]), rotate(qkv[:, :, 1]), qkv[:, :, 2]
        att = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", qq, kk) / math.sqrt(d // heads), -1)
        a = torch.einsum("bhqk,bkhd->bqhd", att, vv).reshape(b, n, d)
        h = h + mods[2][:, None] * (a @ q("attn_out.weight").T)
        x = ln(h, q("norm2.weight"), mods[3], mods[4])
        m = F.linear(F.gelu(F.linear(x, q("mlp.0.weight"), q("mlp.0.bias")), approximate="tanh"),
                     q("mlp.2.weight"), q("mlp.2.bias"))
        h = h + mods[5][:, None] * m
    shift, scale = F.linear(c, p("output_layer.adaLN_modulation.weight"),
                            p("output_layer.adaLN_modulation.bias")).chunk(2, -1)
    return F.linear(ln(h, p("output_layer.norm_final.weight"), shift, scale), p("output_layer.linear.weight"),
                    p("output_layer.linear.bias"))


def published_folder(path, *, model_type="udlm", vocab=30522, length=16, cfg=False, time_conditioning=True,
                     d=32, heads=4, blocks=2, cond=16, seed=0):
    """A folder in the published layout with random weights (what kuleshov-group/* repos hold)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: 0.2 * torch.randn(*shape, generator=g)  # noqa: E731
    w = {"backbone.vocab_embed.embedding": r(vocab, d), "backbone.sigma_map.mlp.0.weight": r(cond, 256),
         "backbone.sigma_map.mlp.0.bias": r(cond), "backbone.sigma_map.mlp.2.weight": r(cond, cond),
         "backbone.sigma_map.mlp.2.bias": r(cond),
         "backbone.rotary_emb.inv_freq": 1.0 / 10000 ** (torch.arange(0, d // heads, 2).float() / (d // heads)),
         "backbone.output_layer.norm_final.weight": 1 + r(d), "backbone.output_layer.linear.weight": r(vocab, d),
         "backbone.output_layer.linear.bias": r(vocab), "backbone.output_layer.adaLN_modulation.weight": r(2 * d, cond),
         "backbone.output_layer.adaLN_modulation.bias": r(2 * d)}
    if cfg:
        w["backbone.cond_map.embedding_table.weight"] = r(3, cond)
    for i in range(blocks):
        w.update({f"backbone.blocks.{i}.{k}": v for k, v in {
            "norm1.weight": 1 + r(d), "norm2.weight": 1 + r(d), "attn_qkv.weight": r(3 * d, d),
            "attn_out.weight": r(d, d), "mlp.0.weight": r(4 * d, d), "mlp.0.bias": r(4 * d), "mlp.2.weight": r(d, 4 * d),
            "mlp.2.bias": r(d), "adaLN_modulation.weight": r(6 * d, cond), "adaLN_modulation.bias": r(6 * d)}.items()})
    config = {"model_type": model_type, "vocab_size": vocab, "model_length": length, "hidden_dim": d, "cond_dim": cond,
              "n_blocks": blocks, "n_heads": heads, "dropout": 0.1, "time_conditioning": time_conditioning,
              "cfg": cfg, "cfg_num_classes": 2 if cfg else -1}
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file(w, str(path / "model.safetensors"))
    return w, config


@pytest.mark.parametrize("model_type, cfg, time_conditioning", [("udlm", False, True), ("udlm", True, True),
                                                                ("mdlm", False, False)])
def test_published_layout_reproduces_its_logits(tmp_path, model_type, cfg, time_conditioning):
    w, config = published_folder(tmp_path / "hf", model_type=model_type, cfg=cfg, time_conditioning=time_conditioning)
    pipe = discdiff.load(tmp_path / "hf", device="cpu")
    assert pipe.lm.family == "diffusion" and pipe.cfg.diffusion == ("uniform" if model_type == "udlm" else "absorbing_state")
    assert pipe.tokenizer.vocab_size == 30522  # bert-base-uncased, as the LM1B checkpoints
    ids = torch.randint(0, 30522, (3, 16), generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.1, 1.0, 4.0])
    with torch.no_grad():
        ours = pipe.lm.backbone(ids, sigma)
        assert torch.allclose(ours, reference_logits(w, config, ids, sigma), atol=1e-5, rtol=1e-4)
        if cfg:
            labels = torch.tensor([0, 1, 2])
            assert torch.allclose(pipe.lm.backbone(ids, sigma, labels),
                                  reference_logits(w, config, ids, sigma, labels), atol=1e-5, rtol=1e-4)
    assert pipe.sample(2, 4, seed=0).tokens.shape == (2, 16)


def test_a_folder_of_another_layout_is_refused(tmp_path, capsys):
    w, _ = published_folder(tmp_path / "hf")
    w["backbone.extra.weight"] = torch.zeros(2)
    save_file(w, str(tmp_path / "hf" / "model.safetensors"))
    assert main(["sample", f"checkpoint={tmp_path / 'hf'}", f"run_dir={tmp_path / 'out'}"]) == 2
    assert "weights in an unknown layout: backbone.extra.weight" in capsys.readouterr().err
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert main(["sample", f"checkpoint={tmp_path / 'hf'}", f"run_dir={tmp_path / 'out'}"]) == 2


def test_unreachable_hub_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["sample", "checkpoint=kuleshov-group/udlm-lm1b", f"run_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cannot fetch kuleshov-group/udlm-lm1b from the HuggingFace hub" in err


# ------------------------------------------------------------------------------- export


def test_export_loads_in_transformers_and_back_with_identical_samples(trained_run, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", f"run_dir={trained_run}", f"out={out}"]) == 0
    assert {"config.json", "model.safetensors", "modeling_discdiff.py", "configuration_discdiff.py",
            "discdiff_tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    run, exported = discdiff.load(trained_run, device="cpu"), discdiff.load(out, device="cpu")
    assert torch.equal(run.sample(6, 8, seed=5).tokens, exported.sample(6, 8, seed=5).tokens)
    ids = torch.randint(0, run.tokenizer.vocab_size, (2, 32), generator=torch.Generator().manual_seed(2))
    sigma, labels = torch.tensor([0.3, 2.0]), torch.tensor([1, 2])
    with torch.no_grad():
        expected = run.lm.backbone(ids, sigma, labels)
    torch.save({"ids": ids, "sigma": sigma, "labels": labels}, tmp_path / "inputs.pt")
    script = (f"import torch; from transformers import AutoModelForMaskedLM\n"
              f"m = AutoModelForMaskedLM.from_pretrained({str(out)!r}, trust_remote_code=True).eval()\n"
              f"x = torch.load({str(tmp_path / 'inputs.pt')!r})\n"
              f"with torch.no_grad(): torch.save(m(x['ids'], timesteps=x['sigma'], cond=x['labels']).logits, "
              f"{str(tmp_path / 'logits.pt')!r})\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.allclose(torch.load(tmp_path / "logits.pt"), expected, atol=1e-5, rtol=1e-4)


def test_export_refusals(trained_run, tmp_path, capsys):
    assert main(["export", f"run_dir={trained_run}"]) == 2
    assert "export needs a folder to write: out=FOLDER" in capsys.readouterr().err
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["export", f"run_dir={trained_run}", f"out={target}"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------- fine-tuning


def test_fine_tuning_starts_from_the_published_weights(tmp_path, cache_dir, quick_overrides):
    from discdiff.config import compose
    from discdiff.data import build_datasets
    from discdiff.training.run import train

    _, _, tokenizer = build_datasets({"name": "qm9", "path": str(SAMPLES["qm9"]), "length": 16})
    w, _ = published_folder(tmp_path / "hf", vocab=tokenizer.vocab_size, length=16)
    run = tmp_path / "run"
    train(compose([*quick_overrides, f"run_dir={run}", "algo=udlm", "model=hf_dit", f"model.pretrained={tmp_path / 'hf'}",
                   "data.length=16", "trainer.max_steps=2", "optim.lr=1e-12", "lr_scheduler=constant_warmup",
                   "lr_scheduler.warmup_steps=1", "training.ema=0", "model.dropout=0.0"]))
    tuned = discdiff.load(run, device="cpu")
    assert tuned.cfg.model.hidden_size == 32 and tuned.lm.backbone.conditioning_mode == "silu_each"
    start = weight_names.from_upstream(w)
    assert all(torch.allclose(tuned.lm.backbone.state_dict()[k], v, atol=1e-6) for k, v in start.items())
    with pytest.raises(discdiff.config.ConfigError, match="is a UDLM checkpoint; train it with algo=udlm"):
        train(compose([*quick_overrides, f"run_dir={tmp_path / 'r2'}", "algo=mdlm", "model=hf_dit",
                       f"model.pretrained={tmp_path / 'hf'}", "data.length=16"]))
