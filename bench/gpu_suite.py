"""The GPU suite: one call measures discdiff against the hardware's limit and checks its GPU paths.

    python bench/gpu_suite.py --out $OUT                    # an H100 / H200: at most ~8 minutes
    python bench/gpu_suite.py --out /tmp/suite --cpu --tiny # the same code at tiny shapes, seconds

It writes `gpu_suite.json` and `gpu_suite.md` into --out after every section, so a run cut short
still reports what it measured. Sections, in order (later ones are skipped, and say so, when the
time budget --budget-s would not cover them):

1. limits    a bf16 8192^3 matmul (TFLOP/s) and a device-to-device copy (TB/s, read + write)
2. checks    pass / fail: bf16 and fp32 NELBO of a fixed batch agree within 1e-3; the compiled
             loss equals the eager one; SDPA runs on the flash or memory-efficient kernel;
             samples hold no mask or out-of-vocabulary id; a D-CFG step with its reductions
             compiled draws what the eager one draws; incremental decoding (a CUDA graph per
             step) equals a full forward pass; a resumed run continues exactly; the MFU formula
             matches PyTorch's FLOP counter; under strategy=fsdp the EMA is checkpointed whole and
             resumes exactly (GPU only)
3. sampling  cost of one sampling step in forward passes (UDLM, MDLM: unguided, D-CFG eager and
             with `sampling.compile`, first-order D-CBG with a small classifier) at batch 256,
             samples/s over 128 steps
4. decoding  AR decoding of 1,024 tokens with the KV cache against recomputing the prefix
5. profile   the share of a UDLM training step's device time per kernel (top 12)
6. reference a plain PyTorch transformer of the DiT's size (no discdiff code: LayerNorm, SDPA,
             GELU MLP, Linear head, cross-entropy over all positions, fused AdamW) at the largest
             batch, bf16, eager and compiled: the tokens/s discdiff's step is measured against,
             from the same call
7. training  DiT small at LM1B shapes (L = 128, V = 30,522), UDLM / MDLM / AR, batches 64 / 256
             / 512, bf16, eager and compiled: tokens/s, MFU, peak memory, through the real
             training step (`discdiff.training.run.fit`: the Lightning module's loss, backward,
             clipping, AdamW, EMA) on synthetic token ids (speed does not depend on the values)

MFU = tokens/s x FLOPs per token / peak, with FLOPs per token = 6 N + 12 n_blocks D L
(`discdiff.models.flops_per_token`: N = weights of the per-token linear layers, the vocabulary
head included; attention scores and values over L keys), against the card's dense bf16 peak
(H100 / H200 SXM: 989 TFLOP/s) and against the matmul measured in section 1.

On the device machine (Python 3.12, no hydra / omegaconf / pydantic): see bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the checkout's discdiff, installed or not

import lightning as L  # noqa: E402

from discdiff.config import compose  # noqa: E402
from discdiff.data.sequences import Padded, Specials  # noqa: E402
from discdiff.data.token_files import Tokens  # noqa: E402
from discdiff.factory import build_language_model  # noqa: E402
from discdiff.files import write_json, write_text  # noqa: E402
from discdiff.guidance import CBG, CFG  # noqa: E402
from discdiff.models import SequenceClassifier, build_encoder, flops_per_token  # noqa: E402
from discdiff.sampling import sample_autoregressive  # noqa: E402
from discdiff.sampling.autoregressive import IncrementalDecoder  # noqa: E402
from discdiff.training.run import fit  # noqa: E402

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16, SXM parts


@dataclass(frozen=True)
class Shapes:
    vocab: int
    length: int
    model: tuple[str, ...]  # config overrides of the backbone
    batches: tuple[int, ...]
    timed_steps: int  # training steps timed after warm-up
    warmup_steps: int
    resume_steps: int
    sample_batch: int
    sample_steps: int  # for samples/s
    cost_steps: int  # for the cost of one step
    decode_length: int
    decode_batch: int
    matmul: int
    copy_bytes: int
    classifier: tuple[str, ...]  # classifier encoder (a DiT size) for D-CBG


FULL = Shapes(vocab=30522, length=128, model=("model=small",), batches=(64, 256, 512), timed_steps=20,
              warmup_steps=6, resume_steps=50, sample_batch=256, sample_steps=128, cost_steps=16,
              decode_length=1024, decode_batch=32, matmul=8192, copy_bytes=1 << 30, classifier=("micro",))
TINY = Shapes(vocab=64, length=16, model=("model=micro", "model.hidden_size=32", "model.n_heads=4",
                                          "model.n_blocks=2", "model.cond_dim=16"),
              batches=(2, 4), timed_steps=3, warmup_steps=1, resume_steps=6, sample_batch=4, sample_steps=4,
              cost_steps=2, decode_length=24, decode_batch=2, matmul=256, copy_bytes=1 << 22, classifier=("micro",))


@dataclass
class Report:
    """Figures and checks, written as JSON and Markdown after every section."""

    out: Path
    meta: dict
    figures: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def figure(self, section: str, name: str, value, unit: str, **shape) -> None:
        self.figures.append({"section": section, "name": name, "value": value, "unit": unit, "shape": shape})
        print(f"[{section}] {name}: {_fmt(value)} {unit}  {_shape(shape)}", flush=True)

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append({"check": name, "passed": bool(passed), "detail": detail})
        print(f"[check] {'PASS' if passed else 'FAIL'} {name}: {detail}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"[note] {text}", flush=True)

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "gpu_suite.json", {"meta": self.meta, "figures": self.figures, "checks": self.checks,
                                                 "notes": self.notes})
        write_text(self.out / "gpu_suite.md", self.markdown())

    def markdown(self) -> str:
        m = self.meta
        lines = [f"# discdiff GPU suite: {m['device']}", "",
                 f"{m['date']}, torch {m['torch']}, commit {m['commit']}, `{m['command']}`", "",
                 "| section | measurement | value | unit | shapes |", "|---|---|---|---|---|"]
        lines += [f"| {f['section']} | {f['name']} | {_fmt(f['value'])} | {f['unit']} | {_shape(f['shape'])} |"
                  for f in self.figures]
        lines += ["", "| check | result | detail |", "|---|---|---|"]
        lines += [f"| {c['check']} | {'pass' if c['passed'] else '**FAIL**'} | {c['detail']} |" for c in self.checks]
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _shape(shape: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in shape.items())


class Budget:
    """Wall-clock budget: a measurement runs only if its estimate fits in what is left."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, estimate: float) -> bool:
        return self.left() > estimate


class Suite:
    def __init__(self, args):
        self.cuda = torch.cuda.is_available() and not args.cpu
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.s = TINY if args.tiny else FULL
        self.tiny = args.tiny
        self.budget = Budget(args.budget_s)
        self.work = Path(tempfile.mkdtemp(prefix="gpu_suite_"))
        name = torch.cuda.get_device_name() if self.cuda else f"CPU {platform.processor() or platform.machine()}"
        self.peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        self.matmul_flops = None
        self.report = Report(Path(args.out), {
            "device": name, "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": _commit(),
            "command": " ".join(["python", *sys.argv]), "tiny": args.tiny, "budget_s": args.budget_s,
            "peak_bf16_flops": self.peak})
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = False  # fp32 checks are fp32

    # -------------------------------------------------------------------------- helpers
    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def timed(self, fn, iters: int, warmup: int = 1) -> float:
        """Seconds per call of fn after `warmup` untimed calls."""
        for _ in range(warmup):
            fn()
        self.sync()
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        self.sync()
        return (time.perf_counter() - start) / iters

    def autocast(self, enabled: bool = True):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled and self.cuda)

    def config(self, algo: str, *extra: str):
        return compose([f"algo={algo}", *self.s.model, f"data.length={self.s.length}", "model.dropout=0.0",
                        "trainer.progress_bar=false", f"trainer.accelerator={'gpu' if self.cuda else 'cpu'}",
                        f"trainer.precision={'bf16-mixed' if self.cuda else '32'}", *extra])

    def model(self, algo: str, *extra: str, conditional: bool = False, length: int | None = None):
        """A language model with random weights (its zero-initialised head perturbed, so outputs
        differ between inputs), on the device."""
        extra = (*extra, *(("data.label_col=qed",) if conditional else ()),
                 *((f"data.length={length}",) if length else ()))
        v = self.s.vocab
        torch.manual_seed(0)
        lm = build_language_model(self.config(algo, *extra), vocab_size=v, mask_id=v - 1, bos_id=1)
        with torch.no_grad():
            for p in lm.parameters():
                if p.dim() >= 1 and not p.abs().sum():
                    p.normal_(0, 0.02)
        return lm.to(self.device)

    def tokens(self, batch: int, length: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(batch)
        return torch.randint(2, self.s.vocab - 1, (batch, length or self.s.length), generator=g).to(self.device)

    def run(self, name: str, section) -> None:
        print(f"== {name} ({self.budget.left():.0f} s left)", flush=True)
        try:
            section()
        except Exception as err:  # a section that breaks must not lose the others' figures
            self.report.note(f"{name} failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            traceback.print_exc()
        self.report.write()

    def skip(self, what: str) -> None:
        self.report.note(f"skipped (time budget): {what}")

    # -------------------------------------------------------------------------- 1. limits
    def limits(self) -> None:
        n, dtype = self.s.matmul, torch.bfloat16 if self.cuda else torch.float32
        a, b = (torch.randn(n, n, device=self.device, dtype=dtype) for _ in range(2))
        seconds = self.timed(lambda: a @ b, iters=20 if self.cuda else 3, warmup=3)
        self.matmul_flops = 2 * n**3 / seconds
        self.report.figure("limits", "matmul", self.matmul_flops / 1e12, "TFLOP/s", n=n, dtype=str(dtype))
        x = torch.empty(self.s.copy_bytes, dtype=torch.uint8, device=self.device)
        y = torch.empty_like(x)
        seconds = self.timed(lambda: y.copy_(x), iters=20, warmup=3)
        self.report.figure("limits", "device copy (read + write)", 2 * x.numel() / seconds / 1e12, "TB/s",
                           bytes=x.numel())

    # -------------------------------------------------------------------------- 2. checks
    def checks(self) -> None:
        self.check_precision()
        self.check_compile()
        self.check_sdpa()
        self.check_samples()
        self.check_compiled_guided_step()
        self.check_graphed_decoding()
        self.check_flops()
        self.check_resume()
        self.check_fsdp_ema()

    def _nelbo(self, lm, batch, bf16: bool) -> float:
        torch.manual_seed(0)  # the same times and corrupted tokens for every call
        with torch.no_grad(), self.autocast(bf16):
            return float(lm.loss(batch).loss)

    def check_precision(self) -> None:
        ids = self.tokens(8)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        for algo in ("udlm", "mdlm"):
            lm = self.model(algo).eval()
            fp32, bf16 = self._nelbo(lm, batch, False), self._nelbo(lm, batch, True)
            gap = abs(bf16 - fp32) / abs(fp32)
            self.report.check(f"bf16 NELBO = fp32 NELBO within 1e-3 ({algo})", gap < 1e-3,
                              f"fp32 {fp32:.5f}, bf16 {bf16:.5f}, relative gap {gap:.2e}"
                              + ("" if self.cuda else " (CPU: both fp32)"))

    def check_compile(self) -> None:
        ids = self.tokens(8)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        lm = self.model("udlm").eval()
        eager = self._nelbo(lm, batch, False)
        backend = "inductor" if self.cuda else "aot_eager"  # CPU: the tracing path, not C++ codegen
        lm.backbone.compile(backend=backend)
        compiled = self._nelbo(lm, batch, False)
        gap = abs(compiled - eager) / abs(eager)
        self.report.check("compiled loss = eager loss (fp32, rel. 1e-4)", gap < 1e-4,
                          f"eager {eager:.6f}, compiled {compiled:.6f} ({backend}), relative gap {gap:.2e}")

    def check_sdpa(self) -> None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kernels = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
        for algo in ("udlm", "ar"):
            lm = self.model(algo).eval()
            ids = self.tokens(4)
            try:
                with torch.no_grad(), self.autocast(), sdpa_kernel(kernels):
                    lm.backbone(ids, torch.ones(4, device=self.device) if algo != "ar" else None)
                    if algo == "ar":  # incremental decoding: one new token, then two (offset mask)
                        cache = lm.backbone.new_kv_cache(4, self.s.length)
                        lm.backbone(ids[:, :3], None, kv_cache=cache)
                        lm.backbone(ids[:, 3:5], None, kv_cache=cache)
                ok, detail = True, "ran with only FLASH_ATTENTION / EFFICIENT_ATTENTION enabled"
            except RuntimeError as err:
                ok, detail = False, str(err).splitlines()[0]
            self.report.check(f"SDPA on the flash or efficient kernel ({algo})", ok, detail)

    def check_samples(self) -> None:
        for algo in ("udlm", "mdlm"):
            lm = self.model(algo).eval()
            with torch.no_grad(), self.autocast():
                tokens = lm.sample(8, self.s.cost_steps * 4, generator=torch.Generator(self.device).manual_seed(0)).tokens
            mask = self.s.vocab - 1
            in_range = bool(((tokens >= 0) & (tokens < self.s.vocab)).all())
            no_mask = algo != "mdlm" or not bool((tokens == mask).any())
            self.report.check(f"samples hold no mask / out-of-vocabulary id ({algo})", in_range and no_mask,
                              f"ids in [{int(tokens.min())}, {int(tokens.max())}], mask id {mask}"
                              + ("" if algo == "mdlm" else " (a regular token under uniform noise)"))

    def check_compiled_guided_step(self) -> None:
        """A D-CFG step with the process's reductions compiled (`sampling.compile`) draws what the
        eager step draws from the same random numbers (a float rounding may flip a rare draw)."""
        v, b = self.s.vocab, 4
        g = torch.Generator().manual_seed(0)
        logits = (3 * torch.randn(2, b, self.s.length, v, generator=g)).to(self.device, torch.bfloat16)
        xt = torch.randint(v - 1, (b, self.s.length), generator=g).to(self.device)
        backend = "inductor" if self.cuda else "aot_eager"
        for algo in ("udlm", "mdlm"):
            process = self.model(algo).process
            if algo == "mdlm":
                xt = xt.masked_fill(torch.rand(xt.shape, generator=g).to(self.device) < 0.5, v - 1)

            def step():
                alphas = torch.full((b,), 0.6, device=self.device), torch.full((b,), 0.4, device=self.device)
                return process.sample_tempered(logits, 2.0, xt, *alphas, torch.Generator(self.device).manual_seed(1))

            eager = step()
            process.compile_sampling(backend)
            same = float((step() == eager).float().mean())
            self.report.check(f"compiled D-CFG step = eager step ({algo})", same >= 0.999,
                              f"{same:.2%} of {eager.numel()} draws equal ({backend}; {eager.ne(xt).sum()} moved)")

    def check_graphed_decoding(self) -> None:
        """Incremental decoding (CUDA: a replayed graph per step over a static cache) gives the
        logits of a full forward pass over each prefix, in fp32 and under bf16 autocast."""
        lm = self.model("ar").eval()
        ids = self.tokens(4)[:, :12]
        for bf16 in (False, True):
            decoder = IncrementalDecoder(lm.backbone, self.s.length)
            with torch.no_grad(), self.autocast(bf16):
                gaps = []
                for i in range(1, ids.shape[1] + 1):
                    ref = lm.backbone(ids[:, :i], None)[:, -1].float()
                    gaps.append(float((decoder.logits(ids[:, :i], None, "k") - ref).abs().max() / ref.abs().max()))
            graphed = bool(decoder.graphs)
            self.report.check(f"incremental decoding = full forward ({'bf16 autocast' if bf16 else 'fp32'})",
                              max(gaps) < (5e-2 if bf16 else 1e-2) and graphed == decoder.use_graphs,
                              f"largest gap {max(gaps):.1e} of the logits' scale over 12 steps, "
                              + ("CUDA graph replayed" if graphed else "no graph (CPU, both fp32)"))

    def check_flops(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        lm = self.model("udlm").train()
        ids = self.tokens(2)
        with FlopCounterMode(display=False) as counter:
            lm.backbone(ids, torch.ones(2, device=self.device)).float().square().mean().backward()
        formula = flops_per_token(lm.backbone, self.s.length) * ids.numel()
        ratio = counter.get_total_flops() / formula
        self.report.check("MFU formula = PyTorch's FLOP count (within 5%)", abs(ratio - 1) < 0.05,
                          f"counted / formula = {ratio:.4f} (forward + backward, batch 2)")

    def check_resume(self) -> None:
        n = self.s.resume_steps
        cfg = lambda run, steps: self.config("udlm", f"run_dir={run}", f"trainer.max_steps={steps}",  # noqa: E731
                                             "lr_scheduler=constant_warmup", "lr_scheduler.warmup_steps=2",
                                             f"loader.global_batch_size={self.s.batches[0]}",
                                             f"checkpointing.every_n_steps={n // 2}", "trainer.val_check_interval=100000",
                                             "trainer.log_every_n_steps=1", "training.ema=0.99")
        data, vocab = self.synthetic(self.s.batches[0] * (n + 2))
        whole, broken = self.work / "whole", self.work / "broken"
        a, b = LossLog(), LossLog()
        fit(cfg(whole, n), whole, data, data, vocab, callbacks=[a])
        fit(cfg(broken, n // 2), broken, data, data, vocab, callbacks=[b])
        fit(cfg(broken, n), broken, data, data, vocab, resume=broken / "checkpoints" / "last.ckpt", callbacks=[b])
        later = range(n // 2, n)
        gaps = [abs(a.losses[i] - b.losses[i]) / abs(a.losses[i]) for i in later]
        identical = all(a.losses[i] == b.losses[i] for i in later)
        self.report.check(f"a resumed {n}-step run continues as an unbroken one", max(gaps) < 1e-3,
                          f"steps {n // 2}..{n - 1}: {'bitwise identical' if identical else 'largest gap'}"
                          + ("" if identical else f" {max(gaps):.1e}"))

    def check_fsdp_ema(self) -> None:
        """strategy=fsdp with an EMA: the checkpoint holds the whole average (the parameters'
        shapes, not the flat shards), and a run resumed half-way ends with the EMA of an unbroken
        one. One GPU shards over a world of one: this checks the code path, not the splitting."""
        if not self.cuda:
            return self.report.note("FSDP + EMA check skipped: Lightning's FSDP needs a GPU")
        n = 6
        cfg = lambda run, steps: self.config("udlm", f"run_dir={run}", f"trainer.max_steps={steps}",  # noqa: E731
                                             "trainer.strategy=fsdp", "trainer.devices=1", "training.ema=0.9",
                                             "lr_scheduler=constant_warmup", "lr_scheduler.warmup_steps=2",
                                             f"loader.global_batch_size={self.s.batches[0]}",
                                             f"checkpointing.every_n_steps={n // 2}", "trainer.val_check_interval=100000")
        data, vocab = self.synthetic(self.s.batches[0] * (n + 2))
        whole, broken = self.work / "fsdp_whole", self.work / "fsdp_broken"
        fit(cfg(whole, n), whole, data, data, vocab)
        fit(cfg(broken, n // 2), broken, data, data, vocab)
        fit(cfg(broken, n), broken, data, data, vocab, resume=broken / "checkpoints" / "last.ckpt")
        a, b = (torch.load(r / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["discdiff"]["ema"]
                ["shadow"] for r in (whole, broken))
        shapes = [tuple(p.shape) for p in self.model("udlm").parameters() if p.requires_grad]
        gap = max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-12)) for x, y in zip(a, b))
        same_shapes = [tuple(x.shape) for x in a] == shapes
        self.report.check("FSDP: the checkpointed EMA is whole and resumes exactly", same_shapes and gap < 1e-3,
                          f"{len(a)} tensors in the parameters' shapes: {same_shapes}; "
                          f"largest relative gap resumed vs unbroken {gap:.1e}")

    def synthetic(self, rows: int, length: int | None = None):
        """A dataset of random ids (rows, L) and its vocabulary description."""
        length = length or self.s.length
        g = torch.Generator().manual_seed(rows)
        ids = torch.randint(2, self.s.vocab - 1, (rows * (length - 2),), generator=g).numpy()
        data = Padded(Tokens(ids, np.arange(0, ids.size + 1, length - 2)), length, Specials(bos=1, eos=1, pad=0))
        v = self.s.vocab
        return data, {"vocab_size": v, "pad_id": 0, "bos_id": 1, "eos_id": 1, "mask_id": v - 1}

    # -------------------------------------------------------------------------- 3. sampling
    def sampling(self) -> None:
        b, v, length = self.s.sample_batch, self.s.vocab, self.s.length
        classifier = SequenceClassifier(build_encoder(self.s.classifier[0], v, length, dropout=0.0), 2)
        classifier = classifier.to(self.device).eval()
        for algo in ("udlm", "mdlm"):
            if not self.budget.allows(60 if not self.tiny else 1):
                return self.skip(f"sampling {algo}")
            lm = self.model(algo, conditional=True).eval()
            ids, sigma = self.tokens(b), torch.ones(b, device=self.device)

            @torch.no_grad()
            def forward():
                with self.autocast():
                    lm.backbone(ids, sigma, torch.full((b,), 2, device=self.device))

            t_forward = self.timed(forward, iters=10 if self.cuda else 2)
            shape = {"batch": b, "L": length, "V": v}
            self.report.figure("sampling", f"{algo} forward pass", t_forward * 1e3, "ms", **shape)
            methods = {"unguided": None, "D-CFG (gamma 2)": CFG(2.0, 1, null_class=lm.num_classes),
                       "first-order D-CBG (gamma 2)": CBG(classifier, 2.0, 1, first_order=True)}
            methods["D-CFG (gamma 2), sampling.compile"] = methods["D-CFG (gamma 2)"]
            for name, guidance in methods.items():
                def draw(steps=self.s.cost_steps, guidance=guidance, compiled="compile" in name):
                    with torch.no_grad(), self.autocast():
                        return lm.sample(b, steps, guidance=guidance, use_cache=True, compile=compiled)

                if "compile" in name and not self.cuda:
                    lm.process.compile_sampling("aot_eager")  # CPU: the tracing path, not C++ codegen
                per_step = self.timed(draw, iters=1) / self.s.cost_steps
                self.report.figure("sampling", f"{algo} step, {name}", per_step / t_forward, "forward passes",
                                   **shape, ms_per_step=round(per_step * 1e3, 2))
            seconds = self.timed(lambda: draw(self.s.sample_steps, None), iters=1, warmup=0)
            self.report.figure("sampling", f"{algo} unguided, {self.s.sample_steps} steps", b / seconds, "samples/s",
                               **shape)

    # -------------------------------------------------------------------------- 4. decoding
    def decoding(self) -> None:
        length, b = self.s.decode_length, self.s.decode_batch
        lm = self.model("ar", length=length).eval()
        times = {}
        for cached in (True, False):
            if not self.budget.allows(90 if not self.tiny else 1):
                return self.skip(f"AR decoding, cache={cached}")

            def decode(cached=cached):
                with torch.no_grad(), self.autocast():
                    sample_autoregressive(lm.backbone, b, length, 1, use_cache=cached,
                                          generator=torch.Generator(self.device).manual_seed(0))

            times[cached] = self.timed(decode, iters=1, warmup=0 if not cached else 1)
            self.report.figure("decoding", f"AR, {'KV cache' if cached else 'recomputed prefix'}",
                               b * (length - 1) / times[cached], "tokens/s", batch=b, tokens=length)
        self.report.figure("decoding", "KV cache speed-up", times[False] / times[True], "x", batch=b, tokens=length)

    # -------------------------------------------------------------------------- 6. reference
    def reference(self) -> None:
        """tokens/s of a plain transformer LM of the DiT's size, eager and compiled, at the largest batch."""
        dit = self.model("udlm").backbone
        batch, v = self.s.batches[-1], self.s.vocab
        for compiled in (False, True):
            if not self.budget.allows(1 if self.tiny else (90 if compiled else 25)):
                self.skip(f"reference {'compiled' if compiled else 'eager'}")
                continue
            torch.manual_seed(0)
            net = PlainTransformer(v, dit.hidden_size, dit.n_blocks, dit.n_heads).to(self.device)
            optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=self.cuda or None)
            forward = torch.compile(net) if compiled and self.cuda else net
            ids = self.tokens(batch)

            def step():
                with self.autocast():
                    logits = forward(ids)
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids.flatten())
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            seconds = self.timed(step, iters=self.s.timed_steps, warmup=self.s.warmup_steps)
            mode = "compiled" if compiled else "eager"
            shape = {"batch": batch, "L": self.s.length, "V": v, "mode": mode}
            self.report.figure("reference", f"plain transformer batch {batch} {mode}",
                               batch * self.s.length / seconds, "tokens/s", **shape,
                               ms_per_step=round(seconds * 1e3, 1))
            if self.cuda:
                self.report.figure("reference", f"plain transformer batch {batch} {mode} peak memory",
                                   torch.cuda.max_memory_allocated() / 2**30, "GiB", **shape)
            del net, optimizer, forward

    # -------------------------------------------------------------------------- 7. training
    def training(self) -> None:
        s = self.s
        # the largest batch first, eager beside compiled, so that a short budget still yields the MFU targets
        plan = [(algo, s.batches[-1], compiled) for algo in ("udlm", "mdlm", "ar") for compiled in (False, True)]
        plan += [("udlm", s.batches[0], True)]
        plan += [(algo, batch, False) for batch in s.batches[:-1] for algo in ("udlm", "mdlm", "ar")]
        if not self.cuda:
            plan = [p for p in plan if not p[2]]  # compiling on the CPU (C++ codegen) is not what we measure
        for algo, batch, compiled in plan:
            estimate = 1 if self.tiny else (90 if compiled else 25) * max(1, batch // 256)
            if not self.budget.allows(estimate):
                self.skip(f"training {algo} batch {batch} {'compiled' if compiled else 'eager'}")
                continue
            self.train_once(algo, batch, compiled)
            self.report.write()

    def train_once(self, algo: str, batch: int, compiled: bool) -> None:
        s = self.s
        steps = s.warmup_steps + s.timed_steps
        run = self.work / f"train_{algo}_{batch}_{compiled}"
        cfg = self.config(algo, f"run_dir={run}", f"loader.global_batch_size={batch}", f"trainer.max_steps={steps}",
                          f"trainer.compile={str(compiled).lower()}", "trainer.val_check_interval=100000",
                          "checkpointing.every_n_steps=100000", "trainer.log_every_n_steps=1000",
                          "lr_scheduler=constant_warmup", "lr_scheduler.warmup_steps=1")
        data, vocab = self.synthetic(batch * (steps + 2))
        timer = StepTimer(s.warmup_steps, self.sync)
        trainer = fit(cfg, run, data, data, vocab, callbacks=[timer])
        tokens_per_s = batch * s.length * s.timed_steps / timer.seconds
        flops = flops_per_token(trainer.lightning_module.lm.backbone, s.length)  # compiled in place: still a DiT
        shape = {"algo": algo, "batch": batch, "L": s.length, "V": s.vocab,
                 "mode": "compiled" if compiled else "eager"}
        self.report.figure("training", f"{algo} batch {batch} {shape['mode']}", tokens_per_s, "tokens/s", **shape,
                           ms_per_step=round(timer.seconds / s.timed_steps * 1e3, 1))
        if self.peak:
            self.report.figure("training", f"{algo} batch {batch} {shape['mode']} MFU", tokens_per_s * flops / self.peak,
                               "of peak bf16", **shape)
        if self.matmul_flops:
            self.report.figure("training", f"{algo} batch {batch} {shape['mode']} vs measured matmul",
                               tokens_per_s * flops / self.matmul_flops, "fraction", **shape)
        if self.cuda:
            self.report.figure("training", f"{algo} batch {batch} {shape['mode']} peak memory",
                               torch.cuda.max_memory_allocated() / 2**30, "GiB", **shape)
            torch.cuda.reset_peak_memory_stats()


    # -------------------------------------------------------------------------- 6. profile
    def profile(self) -> None:
        """Where a training step's device time goes: the loss, backward and fused AdamW of UDLM
        at the largest batch under bf16 autocast (no Lightning), as the share of each kind of
        kernel (the top 12 by self time), so that the next session knows what to fix first."""
        from torch.profiler import ProfilerActivity, profile

        if not self.budget.allows(30 if not self.tiny else 1):
            return self.skip("profile")
        batch = self.s.batches[-1]
        lm = self.model("udlm").train()
        optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-4, fused=self.cuda or None)
        ids = self.tokens(batch)
        data = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def step():
            with self.autocast():
                loss = lm.loss(data).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        self.timed(step, iters=1, warmup=2)
        activities = [ProfilerActivity.CUDA] if self.cuda else [ProfilerActivity.CPU]
        with profile(activities=activities) as prof:
            for _ in range(3):
                step()
            self.sync()
        attr = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        rows = sorted(prof.key_averages(), key=lambda e: getattr(e, attr), reverse=True)
        total = sum(getattr(e, attr) for e in rows) or 1.0
        for e in rows[:12]:
            share, ms = 100 * getattr(e, attr) / total, getattr(e, attr) / 3e3  # microseconds over 3 steps
            self.report.figure("profile", e.key[:90].replace("|", "/"), share, "% of step time",
                               algo="udlm", batch=batch, ms_per_step=round(ms, 2))


class PlainTransformer(torch.nn.Module):
    """The reference of the `reference` section: a pre-norm transformer LM written from plain
    PyTorch modules, of the size of discdiff's DiT (no time conditioning, no adaLN, no rotary)."""

    def __init__(self, vocab: int, dim: int, n_blocks: int, n_heads: int):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, dim)
        self.position = torch.nn.Parameter(torch.zeros(1, 4096, dim))
        layer = lambda: torch.nn.TransformerEncoderLayer(dim, n_heads, 4 * dim, dropout=0.0, activation="gelu",
                                                         batch_first=True, norm_first=True)
        self.blocks = torch.nn.ModuleList(layer() for _ in range(n_blocks))
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embedding(ids) + self.position[:, : ids.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


class StepTimer(L.Callback):
    """Seconds of the optimizer steps after the first `warmup` (synchronised at both ends)."""

    def __init__(self, warmup: int, sync):
        self.warmup, self.sync, self.start, self.seconds = warmup, sync, None, math.nan

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.sync()
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        self.sync()
        self.seconds = time.perf_counter() - self.start


class LossLog(L.Callback):
    """The training loss of every optimizer step, by step."""

    def __init__(self):
        self.losses = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step - 1] = float(outputs["loss"])


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu_suite.json and gpu_suite.md")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is present")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (seconds): keeps the suite's code alive in CI")
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget; later sections are skipped")
    p.add_argument("--sections", default="limits,checks,sampling,decoding,profile,reference,training",
                   help="comma-separated subset, in the order given")
    args = p.parse_args(argv)
    suite = Suite(args)
    for name in args.sections.split(","):
        suite.run(name, getattr(suite, name))
    failed = [c["check"] for c in suite.report.checks if not c["passed"]]
    print(f"wrote {suite.report.out / 'gpu_suite.md'}; {len(suite.report.checks) - len(failed)} checks passed, "
          f"{len(failed)} failed{': ' + '; '.join(failed) if failed else ''}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
