"""The bridge to lm-evaluation-harness: run its tasks on an in-memory model, read its results JSON.

This is how the paper's real tasks (MMLU, GSM8K, HellaSwag, ...) reach the store: `run_harness` runs
lm-eval through its Python API (`simple_evaluate`) with lm-eval building the prompts and metrics and
losslens' scorer answering its requests (`losslens.evaluate.lm_eval_backend.LosslensLM`; `backend="hf"`
uses lm-eval's own `HFLM` instead, for the parity tests), and `parse_results` reads the
`results_*.json` files its CLI writes. Both give `MetricRow`s:

    lm-eval key "acc,none" (+ "acc_stderr,none")   -> metric "acc" with its stderr
    "exact_match,strict-match"                      -> metric "exact_match,strict-match" (filter kept)
    n       the task's sample count (a group's: the sum over its subtasks)
    chance  mean 1/#choices of a multiple-choice task for acc / acc_norm / acc_bytes, 0 for a
            generation task's exact_match, else unknown (None); from the logged samples when there are
            some (run_harness; import of a results file with its samples_*.jsonl beside it)

`choice_task_yaml`, `generation_task_yaml` and `rolling_task_yaml` write lm-eval tasks over our JSONL
files and corpora, so the same items run through both scorers (the parity tests and
bench/eval_throughput.py). Tokenization rules lm-eval
applies, which our scorer reproduces, are in docs/evaluation-lm-eval.md.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from losslens.errors import InputError
from losslens.io import iter_jsonl
from losslens.store import MetricRow

CHOICE_METRICS = ("acc", "acc_norm", "acc_bytes")  # random guessing scores 1/#choices on these


@dataclass
class HarnessResult:
    """lm-eval's results dict (`raw`, per-sample logs under raw["samples"]) and its metrics as rows."""

    raw: dict
    rows: list[MetricRow] = field(default_factory=list)

    def choices(self, task: str) -> list[dict]:
        """Per document of a multiple-choice task, in document order: its log-likelihoods and the
        indices lm-eval picks for acc (argmax) and acc_norm (argmax of log-likelihood / characters)."""
        samples = self.raw.get("samples", {}).get(task)
        if samples is None:
            raise KeyError(f"no logged samples for task {task!r}")
        delimiter = self.raw.get("configs", {}).get(task, {}).get("target_delimiter", " ")
        out = []
        for s in sorted(samples, key=lambda s: s["doc_id"]):
            lls = np.array([float(r[0]) for r in s["filtered_resps"]])
            # acc_norm divides by the choice's length, which excludes the target delimiter
            chars = np.array([float(len(cont) - len(delimiter)) for _, cont in s["arguments"]])
            out.append({"doc_id": s["doc_id"], "logprobs": lls, "pred": int(np.argmax(lls)),
                        "pred_norm": int(np.argmax(lls / chars)), "acc": s.get("acc"),
                        "acc_norm": s.get("acc_norm")})
        return out


def choice_task_yaml(jsonl: str | Path, out_dir: str | Path, name: str | None = None, *,
                     cache_dir: str | Path | None = None) -> str:
    """Write `out_dir/NAME.yaml`, an lm-eval multiple-choice task over our JSONL items
    ({"context", "choices", "gold"}); returns the task name (default: the file's stem).

    The choices carry their own leading space, so the target delimiter is "" and lm-eval scores
    exactly `context` + `choice`, as our scorer does; acc_norm then divides by len(choice) in both.
    A `NAME.fewshot.jsonl` beside the file becomes the few-shot split, and `NAME.json`'s
    `num_fewshot` and `fewshot_separator` carry over: the same prompt format as ours, but lm-eval draws
    its own examples, so only zero-shot results are comparable item by item.
    """
    from losslens.io import write_text

    jsonl = Path(jsonl).resolve()
    stem = jsonl.name.removesuffix(".jsonl")
    name = name or stem
    files = {"test": str(jsonl)}
    pool, task_config = jsonl.with_name(stem + ".fewshot.jsonl"), jsonl.with_name(stem + ".json")
    fewshot = {}
    if pool.is_file():
        files["fewshot"] = str(pool)
        ours = json.loads(task_config.read_text()) if task_config.is_file() else {}
        fewshot = {"fewshot_split": "fewshot", "num_fewshot": ours.get("num_fewshot", 0),
                   "fewshot_delimiter": ours.get("fewshot_separator", "\n\n")}
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": files, **({"cache_dir": str(cache_dir)} if cache_dir else {})},
        "test_split": "test",
        **fewshot,
        "output_type": "multiple_choice",
        "doc_to_text": "context",    # feature names, not Jinja templates: the strings pass untouched
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": "",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                        for m in ("acc", "acc_norm")],
    }
    write_text(Path(out_dir) / f"{name}.yaml", json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return name


def generation_task_yaml(jsonl: str | Path, out_dir: str | Path, name: str | None = None, *,
                         until: list[str] | None = None, max_gen_toks: int = 32,
                         cache_dir: str | Path | None = None) -> str:
    """Write `out_dir/NAME.yaml`, a greedy lm-eval `generate_until` task over our generation JSONL
    items ({"prompt", "answer"}), prompt passed untouched; stop strings and the token limit are one per
    task in lm-eval (default: the first item's `stop`, or "\n"). Metric: exact_match of the output with
    surrounding whitespace and a final "." ignored (as our `normalize_answer`). Returns the name."""
    from losslens.io import write_text

    jsonl = Path(jsonl).resolve()
    name = name or jsonl.name.removesuffix(".jsonl")
    if until is None:
        first = next(iter_jsonl(jsonl))[1]
        until = list(first.get("stop", ["\n"])) if isinstance(first, dict) else ["\n"]
    config = {
        "task": name, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(jsonl)}, **({"cache_dir": str(cache_dir)} if cache_dir else {})},
        "test_split": "test", "output_type": "generate_until",
        "doc_to_text": "prompt", "doc_to_target": "answer", "target_delimiter": "",
        "generation_kwargs": {"until": until, "max_gen_toks": max_gen_toks, "do_sample": False},
        "filter_list": [{"name": "strip", "filter": [{"function": "regex", "regex_pattern": r"^\s*(.*?)\.?\s*$",
                                                      "group_select": 0, "fallback": ""},
                                                     {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }
    write_text(Path(out_dir) / f"{name}.yaml", json.dumps(config, indent=2) + "\n")
    return name


def rolling_task_yaml(jsonl: str | Path, out_dir: str | Path, name: str | None = None, *,
                      cache_dir: str | Path | None = None) -> str:
    """Write `out_dir/NAME.yaml`, an lm-eval `loglikelihood_rolling` task over a corpus JSONL
    ({"text": ...} per document), metrics word_perplexity, byte_perplexity and bits_per_byte (as
    lm-eval's wikitext). Returns the task name."""
    from losslens.io import write_text

    jsonl = Path(jsonl).resolve()
    name = name or jsonl.name.removesuffix(".jsonl")
    config = {
        "task": name, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(jsonl)}, **({"cache_dir": str(cache_dir)} if cache_dir else {})},
        "test_split": "test", "output_type": "loglikelihood_rolling",
        "doc_to_text": "", "doc_to_target": "text",
        "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
    }
    write_text(Path(out_dir) / f"{name}.yaml", json.dumps(config, indent=2) + "\n")
    return name


BACKENDS = ("losslens", "hf")


def run_harness(model, tokenizer, tasks: list[str], *, include_path: str | Path | None = None,
                num_fewshot: int | None = None, limit: int | None = None, batch_size: int = 8,
                device: str = "cpu", seed: int = 0, bootstrap_iters: int = 100_000,
                backend: str = "losslens", scoring_model=None, dtype: str = "fp32") -> HarnessResult:
    """Run lm-eval `tasks` (names or globs; built-in ones, or YAML under `include_path`) on a
    transformers causal LM object, with every seed set to `seed`. The model is moved to `device`.
    `backend="losslens"` answers lm-eval's requests with our scorer (`scoring_model` if given, which
    keeps its token cache and dtype); `"hf"` with lm-eval's HFLM, on a copy of the tokenizer, since
    HFLM may add a pad token to it."""
    manager = check_harness_tasks(tasks, include_path)
    import lm_eval
    import torch

    if backend not in BACKENDS:
        raise InputError(None, f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})", field="backend")
    if model.device != torch.device(device):
        model.to(device)
    if backend == "hf":
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size, device=device)
    else:
        from losslens.evaluate.lm import ScoringModel
        from losslens.evaluate.lm_eval_backend import LosslensLM

        lm = LosslensLM(scoring_model=scoring_model or ScoringModel.from_hf(model, tokenizer, batch_size=batch_size,
                                                                            dtype=dtype))
    raw = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, num_fewshot=num_fewshot,
                                  limit=limit, log_samples=True, bootstrap_iters=bootstrap_iters,
                                  random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                  fewshot_random_seed=seed)
    chances = {task: _chance(raw["configs"].get(task, {}), samples)
               for task, samples in raw.get("samples", {}).items()}
    return HarnessResult(raw=raw, rows=_rows(raw, chances, "<lm-eval results>"))


def check_harness_tasks(tasks: list[str], include_path: str | Path | None = None):
    """Raise `InputError` unless lm-eval knows every task; call it before other work to fail early.
    Returns the lm-eval TaskManager that `run_harness` then uses (cached per tasks and include_path
    for the life of the process: YAML edited after the first call is not re-read)."""
    if not tasks:
        raise InputError(None, "no lm-eval tasks given", field="--harness")
    if include_path is not None and not Path(include_path).is_dir():
        raise InputError(include_path, "lm-eval task directory not found", field="--harness-include")
    return _task_manager(tuple(tasks), None if include_path is None else str(Path(include_path).resolve()))


@functools.lru_cache(maxsize=8)
def _task_manager(tasks: tuple[str, ...], include_path: str | None):
    """A TaskManager that knows `tasks`. Indexing lm-eval's thousands of built-in YAML files takes
    10-20 s, so when `include_path` defines every task asked for, the built-ins are left out."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        manager = TaskManager(include_path=include_path, include_defaults=False)
        if all(manager.match_tasks([t]) for t in tasks):
            return manager
    manager = TaskManager(include_path=include_path)
    unknown = [t for t in tasks if not manager.match_tasks([t])]
    if unknown:
        raise InputError(include_path, f"unknown lm-eval task(s): {', '.join(unknown)}", field="--harness")
    return manager


# -- results JSON -> MetricRows -----------------------------------------------------------------


def parse_results(path_or_dict: str | Path | dict) -> list[tuple[str, list[MetricRow]]]:
    """(model name, metric rows) of each lm-eval results JSON: one dict, one file, or every
    `results*.json` under a directory (in name order, i.e. oldest first for lm-eval's dated names).
    A file's `samples_<task>_<date>.jsonl` neighbours, if present, supply the chance levels."""
    if isinstance(path_or_dict, dict):
        return [(_model_name(path_or_dict), _rows(_checked(path_or_dict, "<dict>"), {}, "<dict>"))]
    path = Path(path_or_dict)
    if path.is_dir():
        files = sorted(p for p in path.rglob("results*.json") if p.is_file())
        if not files:
            raise InputError(path, "no lm-eval results files (results*.json) under this directory")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(path, "no such file or directory")
    out = []
    for f in files:
        try:
            raw = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f, f"cannot read: {err}") from None
        except json.JSONDecodeError as err:
            raise InputError(f, f"bad JSON: {err.msg} (column {err.colno})", line=err.lineno) from None
        _checked(raw, f)
        chances = {task: _chance(raw.get("configs", {}).get(task, {}), samples)
                   for task, samples in _sample_files(f, raw)}
        out.append((_model_name(raw), _rows(raw, chances, f)))
    return out


def _checked(raw, where) -> dict:
    if not isinstance(raw, dict):
        raise InputError(where, f"expected a JSON object, got {type(raw).__name__}")
    if not isinstance(raw.get("results"), dict):
        raise InputError(where, "missing or not an object (is this an lm-eval results file?)", field="results")
    for key in ("higher_is_better", "n-samples", "configs", "group_subtasks", "config"):
        if key in raw and not isinstance(raw[key], dict):
            raise InputError(where, f"expected an object, got {type(raw[key]).__name__}", field=key)
    return raw


def _model_name(raw: dict) -> str:
    """lm-eval's name for the model: the tracker's model_name, else `pretrained=` of the model args."""
    if isinstance(raw.get("model_name"), str) and raw["model_name"]:
        return raw["model_name"]
    config = raw.get("config") or {}
    args = config.get("model_args")
    if isinstance(args, dict) and args.get("pretrained"):
        return str(args["pretrained"])
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() == "pretrained" and value:
                return value.strip()
    return str(config.get("model") or "unknown")


def _number(value, where, field_name, *, optional: bool) -> float | None:
    """A finite float; lm-eval writes "N/A" (and sometimes NaN) for a stderr it could not compute."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if optional and (value is None or value == "N/A"):
            return None
        raise InputError(where, f"expected a number, got {value!r}", field=field_name)
    return float(value) if math.isfinite(value) else None


def _rows(raw: dict, chances: dict[str, float | None], where) -> list[MetricRow]:
    results, better = raw["results"], raw.get("higher_is_better", {})
    configs, groups = raw.get("configs", {}), raw.get("group_subtasks", {})
    rows = []
    for task, entry in results.items():
        if not isinstance(entry, dict):
            raise InputError(where, f"expected an object, got {type(entry).__name__}", field=f"results.{task}")
        n = _task_n(task, raw)
        kind = configs.get(task, {}).get("output_type") if isinstance(configs.get(task), dict) else None
        chance = _group_chance(task, groups, chances, raw) if groups.get(task) else chances.get(task)
        for key, value in entry.items():
            metric, sep, filt = key.partition(",")
            if not sep or "_stderr" in metric:
                continue  # alias, name, sample_len, ...; stderrs are read beside their metric
            value = _number(value, where, f"results.{task}.{key}", optional=True)
            if value is None:
                continue  # a metric lm-eval could not compute (NaN): nothing to store
            stderr = _number(entry.get(f"{metric}_stderr,{filt}"), where, f"results.{task}.{metric}_stderr,{filt}",
                             optional=True)
            hib = better.get(task, {}).get(metric, True) if isinstance(better.get(task), dict) else True
            if metric in CHOICE_METRICS:
                row_chance = chance
            elif metric == "exact_match" and kind == "generate_until":
                row_chance = 0.0
            else:
                row_chance = None
            rows.append(MetricRow(task, metric if filt == "none" else key, value,
                                  stderr=stderr if stderr is not None and stderr >= 0 else None,
                                  n=n, chance=row_chance, higher_is_better=bool(hib)))
    return rows


def _task_n(task: str, raw: dict) -> int | None:
    """Documents scored: n-samples' effective count, a result's sample_len, or a group's subtask sum."""
    counts = raw.get("n-samples", {}).get(task)
    if isinstance(counts, dict) and isinstance(counts.get("effective"), int) and counts["effective"] > 0:
        return counts["effective"]
    sample_len = raw["results"].get(task, {}).get("sample_len")
    if isinstance(sample_len, int) and not isinstance(sample_len, bool) and sample_len > 0:
        return sample_len
    subtasks = raw.get("group_subtasks", {}).get(task)
    if subtasks:
        ns = [_task_n(t, raw) for t in subtasks]
        return sum(ns) if all(ns) else None
    return None


def _group_chance(group: str, groups: dict, chances: dict, raw: dict) -> float | None:
    """A group's chance: its subtasks' chances weighted by their sizes (as lm-eval weights acc)."""
    parts = []
    for t in groups.get(group, []):
        c = _group_chance(t, groups, chances, raw) if groups.get(t) else chances.get(t)
        n = _task_n(t, raw)
        if c is None or not n:
            return None
        parts.append((c, n))
    return sum(c * n for c, n in parts) / sum(n for _, n in parts) if parts else None


def _chance(config: dict, samples: list[dict]) -> float | None:
    """Mean 1/#choices over a multiple-choice task's logged samples (None for other tasks)."""
    if not isinstance(config, dict) or config.get("output_type") != "multiple_choice" or not samples:
        return None
    metrics = [m.get("metric") for m in config.get("metric_list") or [] if isinstance(m, dict)]
    per_choice = 2 if "acc_mutual_info" in metrics else 1  # mutual info logs an unconditional copy
    counts = [len(s["arguments"]) // per_choice for s in samples]
    return float(np.mean([1 / c for c in counts])) if all(counts) else None


def _sample_files(results_file: Path, raw: dict):
    """(task, samples) from `samples_<task>_<date>.jsonl` beside `results_<date>.json`, if present."""
    date = results_file.stem.removeprefix("results_")
    for task in raw["results"]:
        f = results_file.with_name(f"samples_{task}_{date}.jsonl")
        if not f.is_file():
            continue
        samples = []
        for n, s in iter_jsonl(f):
            if not isinstance(s, dict) or not isinstance(s.get("arguments"), (dict, list)):
                raise InputError(f, "missing or malformed", field="arguments", line=n)
            samples.append(s)
        yield task, samples
