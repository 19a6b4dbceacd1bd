"""The embedded synthetic world: entities and facts, documents of several genres, and the held-out
evaluation items that test them, all from one seed. See docs/world.md.

    from losslens.world import WorldConfig, generate_world, load_manifest, GENRES
    manifest = generate_world(WorldConfig(seed=0, size_mb=4.0), "world/")

The names below are imported on first use, so `losslens world --help` does not pay for numpy.
"""

from losslens._lazy import lazy_exports

_EXPORTS = {"WorldConfig": "config", "generate_world": "generate", "load_manifest": "generate",
            "verify_world": "generate", "GENRES": "genres"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
