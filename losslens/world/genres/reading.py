"""Reading comprehension: a short article about a trip, then questions answered from it (RACE analog).

    Article: Omar traveled to Brainholm. He went there by ferry. He bought a lamp at a small shop. He met Nina there.
    Question: Who did Omar meet?
    Answer: Nina

The people and trips are made up per article, so nothing can be memorised: the answer must be found
in the passage. `distractors_in_passage` adds sentences mentioning other values of the asked type
("He waved to Iris from afar."), so that finding *a* name is not enough: the model must bind the
question to the right sentence. With 0 such distractors, preferring any option seen in the passage
suffices, which a small model learns early.
"""

from __future__ import annotations

from dataclasses import dataclass

from losslens.world import lexicon as lex
from losslens.world.genres.base import Doc, Genre, TaskInfo, Unit, distinct_others, multiple_choice
from losslens.world.sampling import article

NAMES = lex.FEMALE_NAMES + lex.MALE_NAMES
N_FEMALE = len(lex.FEMALE_NAMES)


@dataclass(frozen=True)
class Slot:
    name: str
    fact: str        # states the value {v}; {N} name, {P} pronoun, {a} article of the value, {item} the item
    question: str
    distractor: str  # mentions a wrong value {d} of the same type ({ad}: its article)


SLOTS = (
    Slot("place", "{N} traveled to {v}.", "Where did {N} travel to?", "{N} had once lived in {d}."),
    Slot("transport", "{P} went there by {v}.", "How did {N} travel?", "{P} often goes by {d}."),
    Slot("day", "The trip was on a {v}.", "On which day was the trip?", "{P} had first planned to go on a {d}."),
    Slot("item", "{P} bought {a} {v} at a small shop.", "What did {N} buy?",
         "{P} looked at {ad} {d} but did not buy it."),
    Slot("color", "The {item} was {v}.", "What color was the {item}?", "The shop also had a {d} one."),
    Slot("person", "{P} met {v} there.", "Who did {N} meet?", "{P} waved to {d} from afar."),
    Slot("venue", "{P} had lunch near the {v}.", "Where did {N} have lunch?", "{P} walked past the {d}."),
)
PLACE, ITEM, COLOR, PERSON = 0, 3, 4, 5


class Reading(Genre):
    name = "reading"
    task = TaskInfo("reading", "multiple_choice", "acc",
                    "Answer a question about a short article from the article alone (RACE analog).")
    guess_bytes = 350

    def _domain(self, slot: int) -> tuple[str, ...]:
        return (self.kb.cities, lex.TRANSPORTS, lex.WEEKDAYS, lex.ITEMS, lex.COLORS, NAMES, lex.VENUES)[slot]

    def units(self, rng, n, evaluating=False):
        c = self.cfg
        name = rng.integers(len(NAMES), size=n)
        keys = rng.random((n, len(SLOTS) - 1))
        picks = rng.random((n, len(SLOTS), c.options + 4))  # candidate values, first distinct ones win
        out = []
        for i in range(n):
            # The place sentence opens every article; the others are a random subset in story order.
            others = sorted(1 + keys[i].argsort()[: c.facts - 1])
            if COLOR in others and ITEM not in others:
                others[others.index(COLOR)] = ITEM
                others = sorted(others)
            slots = [PLACE] + others
            protagonist = NAMES[name[i]]
            values, wrong = {}, {}
            for s in slots:
                size = len(self._domain(s))
                exclude = {int(name[i])} if s == PERSON else set()
                chosen = _distinct((picks[i, s] * size).astype(int), c.options, exclude)
                if len(chosen) < c.options:
                    chosen += distinct_others(rng, size, exclude | set(chosen), c.options - len(chosen))
                values[s], wrong[s] = chosen[0], chosen[1:]  # wrong[:distractors] also appear in the passage
            passage = self._passage(rng, protagonist, bool(name[i] < N_FEMALE), slots, values, wrong)
            out.append(Unit(passage, (passage, protagonist, slots, values, wrong)))
        return out

    def _passage(self, rng, protagonist, female, slots, values, wrong) -> str:
        d = self.cfg.distractors_in_passage
        pron = "She" if female else "He"
        item = lex.ITEMS[values[ITEM]] if ITEM in values else ""
        sentences = []
        for s in slots:
            v = self._domain(s)[values[s]]
            sentences.append(SLOTS[s].fact.format(N=protagonist, P=pron, v=v, a=article(v), item=item))
        # Distractor sentences go anywhere after the opening sentence.
        for s in slots:
            for w in wrong[s][:d]:
                dv = self._domain(s)[w]
                text = SLOTS[s].distractor.format(N=protagonist, P=pron, d=dv, ad=article(dv))
                sentences.insert(1 + int(rng.integers(len(sentences))), text)
        return " ".join(sentences)

    def _question(self, data, slot: int) -> tuple[str, str]:
        passage, protagonist, slots, values, wrong = data
        item = lex.ITEMS[values[ITEM]] if ITEM in values else ""
        return SLOTS[slot].question.format(N=protagonist, item=item), self._domain(slot)[values[slot]]

    def units_per_doc(self):
        return 1

    def render_doc(self, units, rng):
        data = units[0].data
        asked = rng.permutation(data[2])[: self.cfg.questions_per_doc]
        lines = [f"Article: {data[0]}"]
        for s in sorted(int(s) for s in asked):
            q, a = self._question(data, s)
            lines.append(f"Question: {q}\nAnswer: {a}")
        return Doc("\n".join(lines))

    def render_item(self, unit, rng):
        data = unit.data
        slot = int(data[2][int(rng.integers(len(data[2])))])
        q, a = self._question(data, slot)
        wrong = [" " + self._domain(slot)[w] for w in data[4][slot]]
        return multiple_choice(f"Article: {data[0]}\nQuestion: {q}\nAnswer:", " " + a, wrong, rng)

    def num_choices(self):
        return self.cfg.options


def _distinct(candidates, k: int, exclude: set) -> list[int]:
    out: list[int] = []
    for c in candidates.tolist():
        if c not in exclude and c not in out:
            out.append(c)
            if len(out) == k:
                break
    return out
