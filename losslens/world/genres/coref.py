"""Coreference, Winograd style: two objects, one pronoun, and a property only one of them has.

    Mia put the anvil beside the feather because it was heavy. That is, the anvil was heavy.

Every object has one fixed property of a contrast pair (heavy/light, hot/cold, ...). The twin
sentence with the other adjective refers to the other object, so neither word order nor a liking
for one noun helps: the model must know which object is heavy. That knowledge is word-level
statistics learned object by object (objects are mentioned Zipf-style), so accuracy should rise
gradually with falling loss, as WinoGrande does in the paper.
"""

from __future__ import annotations

from losslens.world import lexicon as lex
from losslens.world.genres.base import Doc, Genre, TaskInfo, Unit
from losslens.world.sampling import KB, Popularity, rng_for

NAMES = lex.FEMALE_NAMES + lex.MALE_NAMES

TEMPLATES = (
    "{N} picked up the {A} and the {B}, and it was very {adj}.",
    "The {A} was next to the {B}, and it seemed {adj}.",
    "{N} put the {A} beside the {B} because it was {adj}.",
    "{N} looked at the {A} and the {B}; it was clearly {adj}.",
    "When {N} touched the {A} and then the {B}, it felt {adj}.",
    "{N} found the {A} under the {B}, and it was {adj}.",
)


class Coref(Genre):
    name = "coref"
    task = TaskInfo("coref", "multiple_choice", "acc",
                    "Which of two objects does 'it' refer to? Needs the objects' properties (WinoGrande analog).")
    guess_bytes = 300

    def __init__(self, world):
        super().__init__(world)
        # groups[d][p]: objects with adjective p of contrast pair d, in a seeded popularity order.
        rng = rng_for(world.cfg.seed, KB, 1)
        self.adjectives = [(a[0], b[0]) for a, b in lex.PROPERTY_PAIRS]
        self.groups = [[[str(w) for w in rng.permutation(side[1].split())] for side in pair]
                       for pair in lex.PROPERTY_PAIRS]
        self.popularity = Popularity(len(self.groups[0][0]), world.cfg.zipf_exponent)

    def units(self, rng, n, evaluating=False):
        dim = rng.integers(len(self.groups), size=n)
        pole = rng.integers(2, size=n)
        ref, other = (self.popularity.draw(rng, n, evaluating) for _ in range(2))
        ref_first = rng.integers(2, size=n).astype(bool)
        template = rng.integers(len(TEMPLATES), size=n)
        name = rng.integers(len(NAMES), size=n)
        out = []
        for i in range(n):
            d, p = dim[i], pole[i]
            r, o = self.groups[d][p][ref[i]], self.groups[d][1 - p][other[i]]
            a, b = (r, o) if ref_first[i] else (o, r)
            adj = self.adjectives[d][p]
            sentence = TEMPLATES[template[i]].format(N=NAMES[name[i]], A=a, B=b, adj=adj)
            out.append(Unit(sentence, (sentence, a, b, r, adj)))
        return out

    def units_per_doc(self):
        return self.cfg.units_per_doc

    def render_doc(self, units, rng):
        return Doc("\n".join(f"{s} That is, the {r} was {adj}." for s, _, _, r, adj in (u.data for u in units)))

    def render_item(self, unit, rng):
        sentence, a, b, r, _ = unit.data
        # Options in the order the sentence mentions them; the gold position is balanced by the draw.
        return {"context": f"{sentence} That is, the", "choices": [f" {a}", f" {b}"], "gold": 0 if r == a else 1}

    def num_choices(self):
        return 2

