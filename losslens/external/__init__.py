"""External models through the same pipeline: Hugging Face checkpoint series (local directories or
hub ids at revisions) evaluated into the results store (`losslens external SPEC.toml`, docs/external.md)."""


from typing import TYPE_CHECKING

from losslens._lazy import lazy_exports

# Lazy: `losslens --help` imports this package's command module, and run.py imports torch.
_EXPORTS = {"Entry": "spec", "Spec": "spec", "load_spec": "spec", "run_external": "run"}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from losslens.external.run import run_external
    from losslens.external.spec import Entry, Spec, load_spec

__getattr__ = lazy_exports(__name__, _EXPORTS)
