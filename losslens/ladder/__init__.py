"""The ladder: a grid of training runs, every checkpoint evaluated, analysed and reported (docs/ladder.md).

    config.py     LadderConfig from TOML; the runs it expands to
    plan.py       what OUT already holds -> the jobs still to do
    jobs.py       TrainJob / EvalJob and `run_job`, which a worker runs
    executors.py  local worker processes, or Ray tasks
    progress.py   the per-run progress files and the live view
    run.py        run_ladder: data -> jobs -> analysis -> report

Exports load lazily: a worker imports `losslens.ladder.jobs` before torch and numpy may be imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from losslens._lazy import lazy_exports

_EXPORTS = {"LadderConfig": "config", "load_ladder_config": "config", "run_ladder": "run",
            "LadderResult": "run"}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from losslens.ladder.config import LadderConfig, load_ladder_config
    from losslens.ladder.run import LadderResult, run_ladder


__getattr__ = lazy_exports(__name__, _EXPORTS)
