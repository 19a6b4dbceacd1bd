"""Exam-style lettered multiple choice with an "Answer: X" line (the MMLU analog).

    Question: Mira Kovac was born in Brainholm. Where was Mira Kovac born?
    A. Talsen
    B. Brainholm
    C. Drouford
    D. Kleivik
    Answer: B

Scored like MMLU: the log-likelihood of " A" .. " D" after "Answer:". Knowing the fact is not enough:
the model must find which *letter* stands before the right content and emit that letter, a binding of
content to an arbitrary symbol that only exists in the context. With `stated_share` = 1 the stem
states the fact, so the whole task is in-context (find the value, find its letter): an ability tiny
models lack until attention learns to look things up, then acquire quickly, as copying is. With
`stated_share` = 0 the model must also recall the fact from pre-training (harder still, as MMLU).
`stated_distractors` states facts of other subjects whose values are among the wrong options.
"""

from __future__ import annotations

from losslens.world.genres.base import Doc, Genre, TaskInfo, distinct_others
from losslens.world.genres.facts import draw_pairs, eval_pairs, question, state
from losslens.world.sampling import draw

LETTERS = "ABCDE"


class Exam(Genre):
    name = "exam"
    task = TaskInfo("exam", "multiple_choice", "acc",
                    "Lettered multiple choice (A-D) about world facts; answer with the letter (MMLU analog).")
    guess_bytes = 420

    def _question(self, rng, s: int, a: int) -> tuple[str, list[str], int]:
        """Stem, options and gold index of a question about (subject s, attribute a)."""
        kb, c = self.kb, self.cfg
        gold = int(kb.values[s, a])
        wrong: list[int] = []
        stem = [question(kb, s, a)]
        if rng.random() < c.stated_share:
            stated = [state(kb, s, a, int(rng.integers(3)))]
            for other in self._other_subjects(rng, s, a, c.stated_distractors):
                stated.append(state(kb, other, a, int(rng.integers(3))))
                wrong.append(int(kb.values[other, a]))
            stem = [stated[i] for i in rng.permutation(len(stated))] + stem
        size = len(kb.domain(a))
        wrong += distinct_others(rng, size, {gold, *wrong}, c.options - 1 - len(wrong))
        wrong = [wrong[i] for i in rng.permutation(len(wrong))]
        g = int(rng.integers(c.options))
        values = wrong[:g] + [gold] + wrong[g:]
        return " ".join(stem), [kb.domain(a)[v] for v in values], g

    def _other_subjects(self, rng, s: int, a: int, k: int) -> list[int]:
        """Up to `k` other subjects with attribute `a` and pairwise different values (Zipf draws)."""
        kb, out = self.kb, []
        seen = {int(kb.values[s, a])}
        for _ in range(50):
            if len(out) == k:
                break
            o = int(draw(rng, kb.cdf, 1)[0])
            if kb.values[o, a] >= 0 and int(kb.values[o, a]) not in seen:
                seen.add(int(kb.values[o, a]))
                out.append(o)
        return out

    def _text(self, stem: str, options: list[str]) -> str:
        lines = [f"Question: {stem}"] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
        return "\n".join(lines) + "\nAnswer:"

    def documents(self, rng, n):
        sizes = rng.integers(1, self.cfg.questions_per_doc + 1, size=n)
        subjects, attrs = draw_pairs(self.world, rng, int(sizes.sum()))
        blocks = []
        for s, a in zip(subjects.tolist(), attrs.tolist()):
            stem, options, g = self._question(rng, s, a)
            blocks.append(f"{self._text(stem, options)} {LETTERS[g]}")
        docs, start = [], 0
        for k in sizes.tolist():
            docs.append(Doc("\n".join(blocks[start:start + k])))
            start += k
        return docs

    def items(self, rng, n):
        out = []
        for s, a in eval_pairs(self.world, rng)[:n]:
            stem, options, g = self._question(rng, s, a)
            out.append({"context": self._text(stem, options),
                        "choices": [f" {LETTERS[i]}" for i in range(len(options))], "gold": g})
        return out

    def num_choices(self):
        return self.cfg.options
