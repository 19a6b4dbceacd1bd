"""Arithmetic word problems with worked step-by-step solutions (the GSM8K analog).

    Question: Lena has 3 shells. She finds 4 more. Then she gives away 2. How many shells does Lena have now?
    Solution: Lena starts with 3 shells. Adding 4: 3 + 4 = 7. Taking away 2: 7 - 2 = 5. The answer is 5.

Exact match needs every step right: copy each number from the question, recall the arithmetic fact,
carry the running total. Per-step skill compounds over `steps`, so accuracy stays near zero until
the single steps are nearly reliable, then rises: the classic emergent shape. `digits` sets the size
of the numbers (the tokenizer gives every digit its own token, so more digits mean carries).
"""

from __future__ import annotations

import numpy as np

from losslens.world import lexicon as lex
from losslens.world.genres.base import Doc, Genre, TaskInfo, Unit, generation

NAMES = lex.FEMALE_NAMES + lex.MALE_NAMES
N_FEMALE = len(lex.FEMALE_NAMES)

# Question phrasing per operation ({P} = pronoun, {b} = amount, {t} = the things) and the solution's lead-in.
STORY = {
    "+": ("{P} buys {b} more.", "{P} finds {b} more.", "{P} gets {b} more from a friend."),
    "-": ("{P} gives away {b}.", "{P} loses {b}.", "{P} sells {b}."),
    "*": ("{P} ends up with {b} times as many.", "The number of {t} grows {b} times."),
}
LEAD = {"+": "Adding {b}", "-": "Taking away {b}", "*": "Multiplying by {b}"}
SYMBOL = {"+": "+", "-": "-", "*": "*"}


def _apply(op: str, x: int, b: int) -> int:
    return x + b if op == "+" else x - b if op == "-" else x * b


class Arithmetic(Genre):
    name = "arithmetic"
    task = TaskInfo("arithmetic", "generation", "exact_match",
                    "Multi-step word problems; greedy chain-of-thought solution, exact match of the final number.",
                    extract="last_number")
    guess_bytes = 400

    def units(self, rng, n, evaluating=False):
        c = self.cfg
        lo, hi = 10 ** (c.digits - 1), 10 ** c.digits
        ops = np.array(list(c.operations))
        name = rng.integers(len(NAMES), size=n)
        thing = rng.integers(len(lex.COUNTABLES), size=n)
        start = rng.integers(lo, hi, size=n)
        op = ops[rng.integers(len(ops), size=(n, c.steps))]
        amount = rng.integers(lo, hi, size=(n, c.steps))
        factor = rng.integers(2, 10, size=(n, c.steps))
        phrase = rng.integers(6, size=(n, c.steps))
        out = []
        for i in range(n):
            x, steps = int(start[i]), []
            for j, o in enumerate(op[i]):
                b = int(factor[i, j] if o == "*" else amount[i, j])
                if o == "-" and x == 1 and "+" in c.operations:
                    o = "+"
                if o == "-" and b >= x >= 2:  # keep the total positive without leaving the digit range
                    b = 1 + (b - 1) % (x - 1)
                steps.append((o, b, int(phrase[i, j])))
                x = _apply(o, x, b)
            x0 = _feasible_start(int(start[i]), steps)
            pron = "She" if name[i] < N_FEMALE else "He"
            question = self._question(NAMES[name[i]], pron, lex.COUNTABLES[thing[i]], x0, steps)
            out.append(Unit(question, (question, NAMES[name[i]], lex.COUNTABLES[thing[i]], x0, steps)))
        return out

    @staticmethod
    def _question(name, pron, things, x0, steps) -> str:
        parts = [f"{name} has {x0} {things}."]
        for j, (op, b, k) in enumerate(steps):
            s = STORY[op][k % len(STORY[op])].format(P=pron if j == 0 else "Then " + pron.lower(), b=b, t=things)
            parts.append(s[0].upper() + s[1:])
        parts.append(f"How many {things} does {name} have now?")
        return " ".join(parts)

    @staticmethod
    def solution(name, things, x0, steps) -> tuple[str, int]:
        parts, x = [f"{name} starts with {x0} {things}."], x0
        for op, b, _ in steps:
            y = _apply(op, x, b)
            parts.append(f"{LEAD[op].format(b=b)}: {x} {SYMBOL[op]} {b} = {y}.")
            x = y
        parts.append(f"The answer is {x}.")
        return " ".join(parts), x

    def units_per_doc(self):
        return self.cfg.problems_per_doc

    def render_doc(self, units, rng):
        lines = []
        for u in units:
            question, name, things, x0, steps = u.data
            lines.append(f"Question: {question}\nSolution: {self.solution(name, things, x0, steps)[0]}")
        return Doc("\n".join(lines))

    def render_item(self, unit, rng):
        question, name, things, x0, steps = unit.data
        text, answer = self.solution(name, things, x0, steps)
        target = " " + text
        # Words are ~1 token, digits 1 token each: half the bytes is a safe bound on the solution's tokens.
        return generation(f"Question: {question}\nSolution:", target, str(answer), stop=["\n"],
                          max_tokens=len(target) // 2 + 8, extract="last_number")


def _feasible_start(x0: int, steps) -> int:
    """Raise the starting amount until no subtraction goes below 1 (only needed when a total hits 1)."""
    while True:
        x, low = x0, None
        for op, b, _ in steps:
            x = _apply(op, x, b)
            if x < 1:
                low = x
                break
        if low is None:
            return x0
        x0 += 1 - low
