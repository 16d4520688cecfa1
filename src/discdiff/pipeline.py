"""The earlier home of `Pipeline`, `load` and `load_classifier`, kept so code written against it
keeps working: they live in `discdiff.loading` (and `discdiff.load`, `discdiff.load_classifier`)."""

from .loading import GUIDANCE, Pipeline, load, load_classifier, sampler_options

__all__ = ["GUIDANCE", "Pipeline", "load", "load_classifier", "sampler_options"]
