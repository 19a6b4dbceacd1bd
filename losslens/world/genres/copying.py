"""Copying: "List: q w e r t. Again: q w e r t." — the in-context (induction) genre.

Nothing here can be memorised: the symbols are uniformly random, so the only way to predict the
second half is to look back at the first. Models learn this in a jump (an induction circuit forms),
which makes copying the most reliable emergent task at tiny scale.
"""

from __future__ import annotations

from losslens.world.genres.base import Doc, Genre, TaskInfo, Unit, generation


class Copying(Genre):
    name = "copying"
    task = TaskInfo("copying", "generation", "exact_match",
                    "Repeat a list of random symbols seen once before (in-context copying).", extract="strip")
    guess_bytes = 100

    def units(self, rng, n, evaluating=False):
        alphabet, sep = self.cfg.alphabet, self.cfg.separator
        symbols = rng.integers(len(alphabet), size=(n, self.cfg.length))
        out = []
        for row in symbols:
            text = sep.join(alphabet[i] for i in row)
            out.append(Unit(text, text))
        return out

    def units_per_doc(self):
        return self.cfg.lists_per_doc

    def render_doc(self, units, rng):
        return Doc("\n".join(f"List: {u.data}. Again: {u.data}." for u in units))

    def render_item(self, unit, rng):
        text = unit.data
        # Generous bound: one token per byte of the answer plus the final period.
        return generation(f"List: {text}. Again:", f" {text}.", text, stop=["."], max_tokens=len(text) + 2,
                          extract="strip")
