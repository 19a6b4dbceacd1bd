"""External models through the same pipeline: Hugging Face checkpoint series (local directories or
hub ids at revisions) evaluated into the results store (`losslens external SPEC.toml`, docs/external.md)."""

from losslens.evaluate.lm import non_embedding_params
from losslens.external.run import run_external
from losslens.external.spec import Entry, Spec, load_spec

__all__ = ["Entry", "Spec", "load_spec", "non_embedding_params", "run_external"]
