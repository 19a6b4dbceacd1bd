"""The genres of the synthetic world, in a fixed order (it is part of the byte-exact output)."""

from losslens.world.genres.arithmetic import Arithmetic
from losslens.world.genres.base import Doc, Genre, WorldContext
from losslens.world.genres.copying import Copying
from losslens.world.genres.coref import Coref
from losslens.world.genres.exam import Exam
from losslens.world.genres.facts import Facts
from losslens.world.genres.reading import Reading
from losslens.world.genres.stories import Stories

GENRE_CLASSES: dict[str, type[Genre]] = {
    cls.name: cls for cls in (Facts, Stories, Reading, Coref, Exam, Arithmetic, Copying)
}
GENRES: tuple[str, ...] = tuple(GENRE_CLASSES)

__all__ = ["GENRES", "GENRE_CLASSES", "Doc", "Genre", "WorldContext"]
