"""An lm-evaluation-harness model backend that answers lm-eval's requests with the losslens scorer.

    import losslens.evaluate.lm_eval_backend      # registers the backend as "losslens"
    lm_eval.simple_evaluate(model="losslens", model_args="pretrained=runs/s-1x", tasks=["hellaswag"])
    lm_eval.simple_evaluate(model=LosslensLM(scoring_model=lm), tasks=[...])   # an in-memory model

lm-eval builds the prompts, few-shot examples, filters and metrics; this class only turns its requests
into token ids exactly as lm-eval's `HFLM` does (its `TemplateLM._encode_pair`, the same
`tok_encode` rules, the same rolling windows, the same left truncation) and scores them with
`losslens.evaluate.scorer`, so the answers equal HFLM's (tests/test_harness_parity.py) while each
token position is computed once:

- `loglikelihood`: requests with the same context tokens become one item, all its continuations
  packed in one row; a fixed few-shot prefix shared by a task's documents runs once.
- `loglikelihood_rolling`: HFLM's disjoint windows (`get_rolling_token_windows`, context length 1),
  each scored as one (context, continuation) item.
- `generate_until`: greedy only (do_sample false or temperature 0, the default of every greedy task);
  each request stops on its own `until` strings, EOS or `max_gen_toks`, then the text is cut at the
  first stop string, as HFLM does.
"""

from __future__ import annotations

from collections import defaultdict

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from losslens.evaluate.lm import ScoringModel
from losslens.evaluate.scorer import generate_tokens, score_encoded


def hf_max_length(sm: ScoringModel) -> int:
    """HFLM's max_length for this model (config positions, else the tokenizer's limit, else 2048)."""
    from lm_eval.models.utils import resolve_max_length

    return resolve_max_length(sm.model.config, sm.tokenizer)


def hf_prefix_token(tokenizer) -> int:
    """HFLM's prefix token: BOS, else EOS."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


@register_model("losslens")
class LosslensLM(TemplateLM):
    """lm-eval's `LM` over a losslens `ScoringModel` (a losslens checkpoint or a local HF model dir)."""

    MAX_GEN_TOKS = 256  # HFLM's default

    def __init__(self, pretrained: str | None = None, *, scoring_model: ScoringModel | None = None,
                 batch_size: int | str = 32, dtype: str = "fp32", device: str = "cpu", **_ignored):
        super().__init__()
        if scoring_model is None:
            if pretrained is None:
                raise ValueError("LosslensLM needs pretrained=PATH or scoring_model=")
            from losslens.evaluate.lm import load_lm

            scoring_model = load_lm(pretrained, dtype=dtype, device=device,
                                    batch_size=int(batch_size) if str(batch_size).isdigit() else 32)
        self.sm = scoring_model
        self.tokenizer = scoring_model.tokenizer
        self._max_length = hf_max_length(self.sm)
        gen_eos = getattr(getattr(self.sm.model, "generation_config", None), "eos_token_id", None)
        gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        self._stop_ids = frozenset([self.eot_token_id, *gen_eos])  # HF generate stops on the config's EOS too

    # -- what TemplateLM needs -----------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        return hf_prefix_token(self.tokenizer)

    @property
    def max_length(self) -> int:
        return self._max_length

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len=None,
                   **kwargs) -> list[int]:
        """HFLM's rule: the tokenizer's own special tokens, none if `string` already starts with BOS text."""
        if add_special_tokens is None:
            prefix = self.tokenizer.decode(self.prefix_token_id)
            add_special_tokens = not (prefix and string.startswith(prefix))
        ids = list(self.sm.encode(string, special_tokens=add_special_tokens))
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(log-likelihood, is_greedy) of each (key, context ids, continuation ids). Continuations of
        the same context ids are one item; a request longer than max_length + 1 tokens loses tokens on
        its left on its own (HFLM's per-request truncation)."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        items, where = [], []
        for r, (_, ctx, cont) in enumerate(requests):
            ctx, cont = list(ctx), list(cont)
            if len(ctx) + len(cont) > self.max_length + 1:
                whole = (ctx + cont)[-(self.max_length + 1):]
                items.append((whole[:-len(cont)], [cont]))
                where.append([r])
                continue
            groups[tuple(ctx)].append(r)
        for ctx, rs in groups.items():
            items.append((list(ctx), [list(requests[r][2]) for r in rs]))
            where.append(rs)
        answers: list[tuple[float, bool] | None] = [None] * len(requests)
        for rs, scores in zip(where, score_encoded(self.sm, items)):
            for k, r in enumerate(rs):
                answers[r] = (float(scores.logprobs[k]), bool(scores.token_correct[k].all()))
                if requests[r][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[r][0], answers[r])
        return answers  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval import utils

        windows, owner = [], []
        for i, (string,) in enumerate(req.args for req in requests):
            for ctx, cont in map(utils.make_disjoint_window, utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, ctx, cont))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (ll, _) in zip(owner, self._loglikelihood_tokens(windows)):
            totals[i] += ll
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        prompts, limits, stops = [], [], []
        for req in requests:
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.MAX_GEN_TOKS)
            if kwargs.get("do_sample") or kwargs.get("temperature", 0.0) > 0:
                raise NotImplementedError("the losslens backend generates greedily only (do_sample false)")
            until = handle_stop_sequences(kwargs.get("until"), eos=eos)
            n = kwargs["max_gen_toks"]
            prompts.append(self.tok_encode(context, left_truncate_len=self.max_length - n))
            limits.append(n)
            stops.append(tuple(s for s in until if s))
        gens = generate_tokens(self.sm, prompts, max_tokens=limits, stops=stops, eos_ids=self._stop_ids)
        out = []
        for req, gen, until in zip(requests, gens, stops):
            text = self.tok_decode(gen)
            for term in until:
                text = text.split(term)[0]
            self.cache_hook.add_partial("generate_until", req.args, text)
            out.append(text)
        return out
