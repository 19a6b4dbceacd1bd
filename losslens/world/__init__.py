"""The embedded synthetic world: entities and facts, documents of several genres, and the held-out
evaluation items that test them, all from one seed. See docs/world.md.

    from losslens.world import WorldConfig, generate_world, load_manifest, GENRES
    manifest = generate_world(WorldConfig(seed=0, size_mb=4.0), "world/")
"""

from losslens.world.config import WorldConfig
from losslens.world.generate import generate_world, load_manifest, verify_world
from losslens.world.genres import GENRES

__all__ = ["WorldConfig", "generate_world", "load_manifest", "verify_world", "GENRES"]
