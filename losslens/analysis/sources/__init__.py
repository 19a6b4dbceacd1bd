"""Loaders for published tables: each turns a folder of ../shared/data into a `TidyTable`.

`load_source(name, path)` imports `losslens.analysis.sources.<name>` only when asked and calls its
`load(path, **options)`. Each loader says in its `TidyTable` what its `loss` column really is.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from losslens.analysis.table import TidyTable
from losslens.errors import InputError

SOURCES = {
    "chinchilla": "Hoffmann et al. 2022 runs digitised by Epoch AI (final loss per run; no tasks)",
    "gadre": "Gadre et al. 2024: 104 models, C4 eval loss, 46 downstream tasks",
    "olmo": "OLMo 2 model ladder (Bhagia et al. 2024): in-loop evals per checkpoint, task bits/byte",
    "pythia": "Pythia v1 evals per checkpoint; no pre-training loss (proxy: LAMBADA NLL or a Chinchilla-law loss)",
    "obsscaling": "ObsScaling (Ruan et al. 2024) public models; no loss (proxy: Chinchilla-law loss from N, D)",
}


def load_source(name: str, path: str | Path, **options) -> TidyTable:
    """Load the published table `name` from `path` (its folder in ../shared/data)."""
    if name not in SOURCES:
        raise InputError(path, f"unknown source {name!r}; choose from {', '.join(SOURCES)}", field="source")
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    try:
        module = importlib.import_module(f"losslens.analysis.sources.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"losslens.analysis.sources.{name}":
            raise
        raise InputError(path, f"the {name!r} loader is not installed in this version", field="source") from None
    try:
        return module.load(path, **options)
    except TypeError as err:  # an option the loader does not take
        if "unexpected keyword" not in str(err):
            raise
        raise InputError(path, f"{name} takes no option {', '.join(options)}", field="--source-option") from None
