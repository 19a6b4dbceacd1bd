"""Evaluate one model on tasks: build prompts (few-shot), score, and aggregate metrics per task."""

from __future__ import annotations

from dataclasses import dataclass

from losslens.evaluate.lm import ScoringModel
from losslens.evaluate.metrics import (
    Metric,
    edit_distance,
    extract_answer,
    generation_metrics,
    multiple_choice_metrics,
    normalize_answer,
)
from losslens.evaluate.scorer import generate_greedy, score_choices
from losslens.evaluate.tasks import Task


@dataclass
class TaskResult:
    task: str
    type: str
    chance: float
    metrics: list[Metric]
    samples: list[dict]

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)


def evaluate_task(lm: ScoringModel, task: Task, *, seed: int = 0, limit: int | None = None) -> TaskResult:
    items = task.items[:limit] if limit else task.items
    prefixes = [task.fewshot_prefix(it, seed) for it in items]
    if task.type == "multiple_choice":
        scores = score_choices(lm, [p + it.context for p, it in zip(prefixes, items)],
                               [list(it.choices) for it in items])
        samples = [{"id": it.id, "gold": it.gold, "logprobs": s.logprobs.tolist(),
                    "choice_chars": [len(c) for c in it.choices],
                    "gold_bytes": len(it.choices[it.gold].encode())} for it, s in zip(items, scores)]
        metrics = multiple_choice_metrics(samples)
    else:
        prompts = [p + it.prompt for p, it in zip(prefixes, items)]
        outputs = generate_greedy(lm, prompts, max_tokens=[it.max_tokens for it in items],
                                  stops=[it.stop for it in items])
        targets = score_choices(lm, prompts, [[it.target] for it in items])
        samples = []
        for it, out, tgt in zip(items, outputs, targets):
            answer = extract_answer(out, it.extract)
            samples.append({
                "id": it.id, "output": out, "answer": answer, "reference": it.answer,
                "exact": normalize_answer(answer) == normalize_answer(it.answer),
                "edit_distance": edit_distance(lm.encode(" " + answer.strip()), lm.encode(" " + it.answer.strip())),
                "target_logprob": float(tgt.logprobs[0]), "target_bytes": len(it.target.encode()),
                "target_token_correct": tgt.token_correct[0].tolist()})
        metrics = generation_metrics(samples)
    return TaskResult(task.name, task.type, task.chance, metrics, samples)
