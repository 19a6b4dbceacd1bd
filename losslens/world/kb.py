"""The knowledge base: people and cities with attributes and relations, drawn once from the seed.

Subjects (people and cities together) are ordered by popularity: subject 0 is the most mentioned.
Articles, questions and exam items pick their subject with probability ~ (rank + 1) ** -zipf_exponent,
so a few subjects are mentioned constantly and most are rare: a model learns the head first and the
long tail gradually, which is what makes fact recall improve smoothly with falling loss.

Attribute values are drawn uniformly (a model cannot score by always answering the most common city).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from losslens.world import lexicon as lex
from losslens.world.config import FactsConfig
from losslens.world.sampling import KB, rng_for, zipf_cdf

PERSON, CITY = 0, 1


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: int                 # which subjects have it: PERSON or CITY
    question: str             # "{s}" = subject name; the closed-book QA and exam question
    prose: tuple[str, ...]    # encyclopedic sentences stating it; "{s}" subject, "{v}" value, "{a}" article


# Prose never contains a question: the held-out split is on questions, facts are learnable from prose.
ATTRIBUTES = (
    Attribute("born_in", PERSON, "Where was {s} born?",
              ("{s} was born in {v}.", "{s} was born in the city of {v}.", "{s} is a native of {v}.")),
    Attribute("profession", PERSON, "What is the profession of {s}?",
              ("{s} works as {a} {v}.", "By trade, {s} is {a} {v}.", "{s} earns a living as {a} {v}.")),
    Attribute("instrument", PERSON, "Which instrument does {s} play?",
              ("{s} plays the {v}.", "In the evenings, {s} plays the {v}.", "{s} is a keen {v} player.")),
    Attribute("mentor", PERSON, "Who was the mentor of {s}?",
              ("{s} was trained by {v}.", "{s} learned the trade from {v}.", "The teacher of {s} was {v}.")),
    Attribute("pet", PERSON, "What pet does {s} keep?",
              ("{s} keeps {a} {v} at home.", "{s} owns a pet {v}.", "{s} has {a} {v} as a pet.")),
    Attribute("country", CITY, "In which country is {s}?",
              ("{s} is a city in {v}.", "{s} lies in {v}.", "The city of {s} is in {v}.")),
    Attribute("known_for", CITY, "What is {s} known for?",
              ("{s} is known for its {v}.", "{s} is famous for its {v}.", "Travellers visit {s} for its {v}.")),
)
ATTR = {a.name: i for i, a in enumerate(ATTRIBUTES)}
PERSON_ATTRS = [i for i, a in enumerate(ATTRIBUTES) if a.kind == PERSON]
CITY_ATTRS = [i for i, a in enumerate(ATTRIBUTES) if a.kind == CITY]


@dataclass(frozen=True)
class KnowledgeBase:
    names: tuple[str, ...]    # subject names by popularity rank
    kinds: np.ndarray         # PERSON or CITY per subject
    female: np.ndarray        # bool per subject (people only)
    values: np.ndarray        # [subject, attribute] index into the attribute's domain; -1 = not applicable
    cities: tuple[str, ...]   # city names by city index (domain of born_in)
    countries: tuple[str, ...]
    city_subject: np.ndarray  # subject index of each city
    person_subject: np.ndarray
    cdf: np.ndarray           # Zipf over subjects

    def domain(self, attr: int) -> tuple[str, ...]:
        """All possible values of attribute `attr`, as strings."""
        name = ATTRIBUTES[attr].name
        return {"born_in": self.cities, "profession": tuple(lex.PROFESSIONS),
                "instrument": tuple(lex.INSTRUMENTS), "pet": tuple(lex.PETS), "country": self.countries,
                "known_for": tuple(lex.PRODUCTS), "mentor": self.person_names}[name]

    @cached_property
    def person_names(self) -> tuple[str, ...]:
        return tuple(self.names[s] for s in self.person_subject)

    def value(self, subject: int, attr: int) -> str:
        return self.domain(attr)[self.values[subject, attr]]

    def pronoun(self, subject: int) -> str:
        return "she" if self.female[subject] else "he"


def _pseudo_words(rng, n: int, suffixes: list[str], taken: set[str]) -> list[str]:
    """`n` distinct made-up capitalised names like "Brainholm" (no collision with `taken`)."""
    out: list[str] = []
    while len(out) < n:
        k = 4 * (n - len(out))
        on, vo, co = (rng.integers(len(x), size=k) for x in (lex.ONSETS, lex.VOWELS, lex.CODAS))
        su = rng.integers(len(suffixes), size=k)
        for i in range(k):
            word = (lex.ONSETS[on[i]] + lex.VOWELS[vo[i]] + lex.CODAS[co[i]] + suffixes[su[i]]).capitalize()
            if word not in taken:
                taken.add(word)
                out.append(word)
                if len(out) == n:
                    break
    return out


def build_kb(seed: int, cfg: FactsConfig, zipf_exponent: float) -> KnowledgeBase:
    rng = rng_for(seed, KB)
    n_people, n_cities = cfg.people, cfg.cities
    first = lex.FEMALE_NAMES + lex.MALE_NAMES
    # Distinct (first, last) pairs, then a random popularity order over people and cities together.
    pairs = rng.choice(len(first) * len(lex.SURNAMES), size=n_people, replace=False)
    people = [f"{first[p // len(lex.SURNAMES)]} {lex.SURNAMES[p % len(lex.SURNAMES)]}" for p in pairs]
    female = pairs // len(lex.SURNAMES) < len(lex.FEMALE_NAMES)
    taken = set(first) | set(lex.SURNAMES)
    cities = _pseudo_words(rng, n_cities, lex.CITY_SUFFIXES, taken)
    countries = _pseudo_words(rng, cfg.countries, lex.COUNTRY_SUFFIXES, taken)

    n = n_people + n_cities
    order = rng.permutation(n)                       # order[rank] = person index, or n_people + city index
    person_subject = np.empty(n_people, dtype=np.int64)
    city_subject = np.empty(n_cities, dtype=np.int64)
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[order] = np.arange(n)
    person_subject[:] = rank_of[:n_people]
    city_subject[:] = rank_of[n_people:]
    names = [""] * n
    kinds = np.empty(n, dtype=np.int8)
    fem = np.zeros(n, dtype=bool)
    for i, s in enumerate(person_subject):
        names[s], kinds[s], fem[s] = people[i], PERSON, female[i]
    for i, s in enumerate(city_subject):
        names[s], kinds[s] = cities[i], CITY

    values = np.full((n, len(ATTRIBUTES)), -1, dtype=np.int64)
    is_person = kinds == PERSON
    for a in PERSON_ATTRS:
        name = ATTRIBUTES[a].name
        size = {"born_in": n_cities, "profession": len(lex.PROFESSIONS), "instrument": len(lex.INSTRUMENTS),
                "pet": len(lex.PETS), "mentor": n_people}[name]
        values[is_person, a] = rng.integers(size, size=n_people)
    # Nobody is their own mentor: shift a self-mentor to the next person.
    mentor = ATTR["mentor"]
    person_idx = np.empty(n, dtype=np.int64)
    person_idx[person_subject] = np.arange(n_people)
    selfish = is_person & (values[:, mentor] == person_idx)
    values[selfish, mentor] = (values[selfish, mentor] + 1) % n_people
    for a, size in zip(CITY_ATTRS, (cfg.countries, len(lex.PRODUCTS))):
        values[~is_person, a] = rng.integers(size, size=n_cities)

    return KnowledgeBase(names=tuple(names), kinds=kinds, female=fem, values=values, cities=tuple(cities),
                         countries=tuple(countries), city_subject=city_subject, person_subject=person_subject,
                         cdf=zipf_cdf(n, zipf_exponent))
