"""discdiff: guided discrete diffusion language models (AR, MDLM, UDLM).

    import discdiff
    model = discdiff.load("runs/qm9-udlm")          # a run folder or a .ckpt file
    out = model.sample(64, steps=32)
    print(model.decode(out.tokens)[:4], out.nfe)
"""

__version__ = "0.1.0"


def load(path, **kwargs):
    """Load a trained model (see discdiff.pipeline.load)."""
    from .pipeline import load as _load

    return _load(path, **kwargs)


def sample(process, schedule, denoiser, shape, steps, **kwargs):
    """Ancestral sampling with any denoiser callable and optional guidance
    (see discdiff.sampling.sample and discdiff.guidance)."""
    from .sampling import sample as _sample

    return _sample(process, schedule, denoiser, shape, steps, **kwargs)


__all__ = ["load", "sample", "__version__"]
