"""Encyclopedic facts about people and cities, and closed-book QA about them (TriviaQA analog).

Training text states facts in prose articles:

    Mira Kovac was born in Brainholm. Mira Kovac plays the cello. Mira Kovac keeps a parrot at home.

and, in a share of documents (`qa_doc_share`), as question/answer lists:

    Question: Where was Ada Lind born?
    Answer: Talsen

The (subject, attribute) pairs are split once: a share (`qa_heldout`) is never asked in training.
Eval items ask exactly those pairs, and only facts that training prose states at least `min_mentions`
times, so every eval fact is learnable from the corpus while no eval question is in it. To answer, a
model has to carry a fact from prose into the question format it learned on other facts.
Subjects are drawn Zipf-style: head facts are learned early, tail facts late, so exact match rises
smoothly as the loss falls.
"""

from __future__ import annotations

import numpy as np

from losslens.world.genres.base import Doc, Genre, TaskInfo, generation
from losslens.world.kb import ATTRIBUTES, CITY, CITY_ATTRS, PERSON_ATTRS
from losslens.world.sampling import article, draw

QA_PER_DOC = 4  # question/answer pairs per QA document (each document draws 1..this)


def draw_pairs(world, rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` (subject, attribute) pairs that training may ask about: Zipf subjects, uniform attributes."""
    kb, mask = world.kb, world.fact_heldout
    subjects, attrs = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    have = 0
    while have < n:
        m = int((n - have) / (1 - world.cfg.genres.facts.qa_heldout) * 1.2) + 4
        s = draw(rng, kb.cdf, m)
        r = rng.random(m)
        a = np.where(kb.kinds[s] == CITY, np.take(CITY_ATTRS, (r * len(CITY_ATTRS)).astype(int)),
                     np.take(PERSON_ATTRS, (r * len(PERSON_ATTRS)).astype(int)))
        keep = ~mask[s, a]
        subjects.append(s[keep])
        attrs.append(a[keep])
        have += int(keep.sum())
    return np.concatenate(subjects)[:n], np.concatenate(attrs)[:n]


def eval_pairs(world, rng) -> list[tuple[int, int]]:
    """Held-out pairs whose fact training prose states often enough, in a seeded random order."""
    c = world.cfg.genres.facts
    ok = world.fact_heldout & (world.kb.values >= 0) & (world.mentions >= c.min_mentions)
    pairs = np.argwhere(ok)
    return [tuple(int(x) for x in pairs[i]) for i in rng.permutation(len(pairs))]


def state(kb, subject: int, attr: int, variant: int) -> str:
    """One prose sentence stating the fact."""
    v = kb.value(subject, attr)
    templates = ATTRIBUTES[attr].prose
    return templates[variant % len(templates)].format(s=kb.names[subject], v=v, a=article(v))


def question(kb, subject: int, attr: int) -> str:
    return ATTRIBUTES[attr].question.format(s=kb.names[subject])


class Facts(Genre):
    name = "facts"
    task = TaskInfo("qa", "generation", "exact_match",
                    "Closed-book QA about facts stated only in encyclopedic prose (TriviaQA analog).",
                    extract="strip")
    guess_bytes = 220

    def documents(self, rng, n):
        is_qa = rng.random(n) < self.cfg.qa_doc_share
        n_qa = int(is_qa.sum())
        articles = iter(self._articles(rng, n - n_qa))
        qa_docs = iter(self._qa_docs(rng, n_qa))
        return [next(qa_docs) if q else next(articles) for q in is_qa]

    def _articles(self, rng, n) -> list[Doc]:
        kb = self.kb
        subjects = draw(rng, kb.cdf, n)
        order = rng.random((n, len(PERSON_ATTRS))).argsort(axis=1)
        variant = rng.integers(3, size=(n, len(PERSON_ATTRS)))
        k = self.cfg.attributes_per_doc
        docs = []
        for i, s in enumerate(subjects.tolist()):
            pool = CITY_ATTRS if kb.kinds[s] == CITY else PERSON_ATTRS
            attrs = [pool[j] for j in order[i] if j < len(pool)][:k]
            text = " ".join(state(kb, s, a, variant[i, j]) for j, a in enumerate(attrs))
            docs.append(Doc(text, tuple((s, a) for a in attrs)))
        return docs

    def _qa_docs(self, rng, n) -> list[Doc]:
        sizes = rng.integers(1, QA_PER_DOC + 1, size=n)
        subjects, attrs = draw_pairs(self.world, rng, int(sizes.sum()))
        lines = [f"Question: {question(self.kb, s, a)}\nAnswer: {self.kb.value(s, a)}"
                 for s, a in zip(subjects.tolist(), attrs.tolist())]
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return [Doc("\n".join(lines[bounds[i]:bounds[i + 1]])) for i in range(n)]

    def items(self, rng, n):
        out = []
        for s, a in eval_pairs(self.world, rng)[:n]:
            v = self.kb.value(s, a)
            out.append(generation(f"Question: {question(self.kb, s, a)}\nAnswer:", f" {v}", v, stop=["\n"],
                                  max_tokens=len(v) + 2, extract="strip"))
        return out
