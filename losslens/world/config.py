"""`WorldConfig`: every knob of the synthetic world, with defaults, bounds and validation.

A world is a pure function of its config: the same `WorldConfig` gives byte-identical files. Knobs
come from Python (`WorldConfig(seed=0, size_mb=4.0)`) or from a TOML `[world]` table
(`WorldConfig.from_dict(table, source="file.toml")`); a bad value raises
`InputError(source, msg, field="world.genres.exam.options")` before any work.

Each knob is declared with `losslens.config.knob(default, lo, hi)`: one place for its default and its
range, which `validate()` checks generically (the one validator of every losslens config). Cross-field
rules (a distractor count below the option count, ...) are written out by hand in the classes' `_rules`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from losslens.config import Config, knob, to_dict
from losslens.config import from_dict as _from_dict

# --- one dataclass per genre --------------------------------------------------------------------------
# `share` is a relative weight: shares are normalised over all genres to fractions of the corpus bytes.
# `fewshot` is the default number of few-shot examples written into the genre's task config.


@dataclass(frozen=True)
class FactsConfig(Config):
    """Encyclopedic prose about people and cities; closed-book QA asks for single facts."""

    share: float = knob(0.24, 0.0)
    people: int = knob(1000, 10, 14000)          # person entities (cities come in addition)
    cities: int = knob(120, 10, 2000)
    countries: int = knob(16, 5, 200)           # >= 5 so that exam options stay distinct
    attributes_per_doc: int = knob(5, 1, 5)      # facts stated in one person's article (of 5)
    qa_doc_share: float = knob(0.25, 0.0, 1.0)   # share of facts documents written as Question/Answer lists
    qa_heldout: float = knob(0.25, 0.01, 0.9)    # share of (entity, attribute) pairs never asked in training
    min_mentions: int = knob(1, 1)               # eval asks only facts stated at least this often in train
    fewshot: int = knob(3, 0, 16)


@dataclass(frozen=True)
class StoriesConfig(Config):
    """Short everyday narratives from scripts; completion picks the ending that fits the story."""

    share: float = knob(0.14, 0.0)
    events: int = knob(2, 0, 3)                  # middle events before the ending (more = more cues)
    options: int = knob(4, 2, 8)                 # endings per eval item (gold + endings of other scripts)
    fewshot: int = knob(0, 0, 16)


@dataclass(frozen=True)
class ReadingConfig(Config):
    """Short articles about a trip followed by questions; answered from the article alone."""

    share: float = knob(0.12, 0.0)
    facts: int = knob(4, 2, 7)                   # stated facts (sentences) per article
    distractors_in_passage: int = knob(0, 0, 2)  # same-type wrong values also mentioned in the article
    options: int = knob(4, 2, 6)
    questions_per_doc: int = knob(2, 1, 7)
    fewshot: int = knob(0, 0, 16)

    def _rules(self, bad):
        if self.distractors_in_passage > self.options - 1:
            raise bad("distractors_in_passage", f"must be <= options - 1 = {self.options - 1}, "
                                                f"got {self.distractors_in_passage}")
        if self.questions_per_doc > self.facts:
            raise bad("questions_per_doc", f"must be <= facts = {self.facts}, got {self.questions_per_doc}")


@dataclass(frozen=True)
class CorefConfig(Config):
    """Winograd-like sentences: "it" refers to the one of two objects that has the stated property."""

    share: float = knob(0.10, 0.0)
    units_per_doc: int = knob(4, 1, 20)          # sentences (each followed by its resolution) per document
    fewshot: int = knob(0, 0, 16)


@dataclass(frozen=True)
class ExamConfig(Config):
    """Lettered multiple-choice questions about world facts with an "Answer: X" line (MMLU analog)."""

    share: float = knob(0.14, 0.0)
    options: int = knob(4, 2, 5)                 # letters A.. (A-E)
    stated_share: float = knob(1.0, 0.0, 1.0)    # share of questions whose stem states the fact (in-context)
    stated_distractors: int = knob(0, 0, 4)      # extra stated facts whose values are wrong options
    questions_per_doc: int = knob(3, 1, 10)
    fewshot: int = knob(2, 0, 16)

    def _rules(self, bad):
        if self.stated_distractors > self.options - 1:
            raise bad("stated_distractors", f"must be <= options - 1 = {self.options - 1}, "
                                            f"got {self.stated_distractors}")


@dataclass(frozen=True)
class ArithmeticConfig(Config):
    """Word problems with worked step-by-step solutions ending in "The answer is N." (GSM8K analog)."""

    share: float = knob(0.14, 0.0)
    digits: int = knob(1, 1, 4)                  # digits of the starting amount and of each step's amount
    steps: int = knob(2, 1, 6)                   # operations per problem
    operations: str = "+-"                       # any of "+", "-", "*" (multipliers are 2..9)
    problems_per_doc: int = knob(2, 1, 10)
    fewshot: int = knob(1, 0, 16)

    def _rules(self, bad):
        if not self.operations or set(self.operations) - set("+-*"):
            raise bad("operations", f"must be a non-empty string of + - *, got {self.operations!r}")


@dataclass(frozen=True)
class CopyingConfig(Config):
    """"List: <k random symbols>. Again: <the same symbols>." — the induction/copying genre."""

    share: float = knob(0.12, 0.0)
    length: int = knob(10, 2, 64)                # symbols per list
    alphabet: str = "abcdefghijklmnopqrstuvwxyz"
    separator: str = " "                         # between symbols; " " makes every symbol one BPE token
    lists_per_doc: int = knob(2, 1, 10)
    fewshot: int = knob(0, 0, 16)

    def _rules(self, bad):
        symbols = set(self.alphabet)
        if len(symbols) < 2 or len(symbols) != len(self.alphabet):
            raise bad("alphabet", f"needs at least 2 distinct symbols, no repeats, got {self.alphabet!r}")
        if symbols & set(".\n\r\t ") or not self.alphabet.isascii():
            raise bad("alphabet", "ASCII symbols only; no '.', spaces or line breaks")
        if set(self.separator) - set(" ,;-|") or len(self.separator) > 3:
            raise bad("separator", f"must be up to 3 of ' ,;-|', got {self.separator!r}")
        if symbols & set(self.separator):
            raise bad("separator", f"shares symbols with the alphabet: {self.separator!r}")


@dataclass(frozen=True)
class GenresConfig(Config):
    facts: FactsConfig = field(default_factory=FactsConfig)
    stories: StoriesConfig = field(default_factory=StoriesConfig)
    reading: ReadingConfig = field(default_factory=ReadingConfig)
    coref: CorefConfig = field(default_factory=CorefConfig)
    exam: ExamConfig = field(default_factory=ExamConfig)
    arithmetic: ArithmeticConfig = field(default_factory=ArithmeticConfig)
    copying: CopyingConfig = field(default_factory=CopyingConfig)

    def _rules(self, bad):
        if sum(getattr(self, f.name).share for f in dataclasses.fields(self)) <= 0:
            raise bad("facts.share", "all genre shares are 0; at least one must be positive")


@dataclass(frozen=True)
class WorldConfig(Config):
    """The whole world: seed, size, global knobs and the per-genre knobs under `genres`."""

    seed: int = knob(0, 0, 2**63 - 1)
    size_mb: float = knob(4.0, 0.01, 100_000.0)   # train.txt size in MB (10^6 bytes)
    zipf_exponent: float = knob(1.0, 0.0, 3.0)    # mention frequency of the rank-r entity ~ r^-exponent
    heldout: float = knob(0.1, 0.01, 0.9)         # share of each genre's item space reserved for evaluation
    eval_items: int = knob(300, 1, 100_000)       # items per task
    fewshot_items: int = knob(20, 0, 1000)        # few-shot pool per task (held out too)
    val_fraction: float = knob(0.01, 0.0, 0.5)    # val.txt size relative to train.txt ...
    val_min_mb: float = knob(0.1, 0.001)          # ... at least this ...
    val_max_mb: float = knob(2.0, 0.001)          # ... and at most this
    genres: GenresConfig = field(default_factory=GenresConfig)

    def _rules(self, bad):
        if self.val_min_mb > self.val_max_mb:
            raise bad("val_min_mb", f"must be <= val_max_mb = {self.val_max_mb}, got {self.val_min_mb}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source=None, prefix: str = "world") -> WorldConfig:
        """Build from a TOML-style table (nested `genres.<genre>` tables); every problem is an InputError."""
        return _from_dict(cls, d, source=source, prefix=prefix)  # calls validate(), nested knobs included

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def shares(self) -> dict[str, float]:
        """Each genre's fraction of the corpus bytes (shares normalised to sum to 1)."""
        raw = {f.name: getattr(self.genres, f.name).share for f in dataclasses.fields(self.genres)}
        total = sum(raw.values())
        return {g: s / total for g, s in raw.items()}

    def val_bytes(self) -> int:
        mb = min(max(self.size_mb * self.val_fraction, self.val_min_mb), self.val_max_mb)
        return int(mb * 1e6)
