"""One renderer of the paper's claims (`losslens.analysis.study.Claim`), shared by the HTML report, the
demo's table and `losslens report`'s lines: the rows, their status words and the headline are made
here once; each front end only puts them in its own markup."""

from __future__ import annotations

import dataclasses

from losslens.analysis.study import CLAIMS, HOLDS, UNTESTABLE, Claim

MISSING = "missing"


@dataclasses.dataclass(frozen=True)
class ClaimRow:
    key: str
    label: str
    text: str
    status: str                 # holds, fails, not testable here, or missing (absent from the summary)
    evidence: tuple[str, ...]   # lines; the reason (why it fails or cannot be tested) comes last


def _evidence(claim: Claim) -> tuple[str, ...]:
    lines = list(claim.evidence)
    if not lines:  # a summary from elsewhere: show its fields as they are
        lines = [f"{k}: {v}" for k, v in claim.details.items()]
    if claim.reason:
        lines.append(("why not testable: " if claim.status == UNTESTABLE else "why: ") + claim.reason)
    return tuple(lines)


def claim_rows(claims: list[Claim]) -> list[ClaimRow]:
    """(a)-(e) in order (missing ones marked), then any other claims the summary holds."""
    by_key = {c.key: c for c in claims}
    rows = []
    for key, label, text in CLAIMS:
        c = by_key.pop(key, None)
        rows.append(ClaimRow(key, label, text, MISSING, ("not in the summary",)) if c is None else
                    ClaimRow(key, c.label, c.text or text, c.status, _evidence(c)))
    rows += [ClaimRow(c.key, c.label, c.text, c.status, _evidence(c)) for c in by_key.values()]
    return rows


def headline(claims: list[Claim]) -> str:
    """'All five claims hold.' or e.g. '3 of 5 claims hold; 1 fails; 1 is not testable here.'"""
    rows = [r for r in claim_rows(claims) if r.key in {k for k, _, _ in CLAIMS}]
    counts = {s: sum(r.status == s for r in rows) for s in (HOLDS, "fails", UNTESTABLE, MISSING)}
    if counts[HOLDS] == len(rows):
        return "All five claims hold."
    parts = [f"{counts[HOLDS]} of {len(rows)} claims hold"]
    if counts["fails"]:
        parts.append(f"{counts['fails']} fail{'s' if counts['fails'] == 1 else ''}")
    if counts[UNTESTABLE]:
        parts.append(f"{counts[UNTESTABLE]} {'is' if counts[UNTESTABLE] == 1 else 'are'} not testable here")
    if counts[MISSING]:
        parts.append(f"{counts[MISSING]} missing from the summary")
    return "; ".join(parts) + "."
