"""Shared fixtures. Everything runs offline against local files in temporary directories."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _offline_hf(tmp_path_factory):
    """No test may reach the Hugging Face hub: offline mode and a private cache."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_text_corpus(path: Path, n_docs: int = 2000, seed: int = 0) -> Path:
    """A small corpus of blank-line separated documents with learnable structure."""
    rng = random.Random(seed)
    names = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal"]
    places = ["Rome", "Oslo", "Lima", "Pune", "Kiev", "Nice"]
    docs = []
    for _ in range(n_docs):
        who, where = rng.choice(names), rng.choice(places)
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        docs.append(f"{who} lives in {where}. {who} has {a} apples and {b} pears, so {who} has {a + b} fruits.\n"
                    f"In {where} it is {rng.choice(['cold', 'warm', 'wet'])} today.")
    path.write_text("\n\n".join(docs))
    return path


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory) -> Path:
    return make_text_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory) -> Path:
    """A data dir shared by the trainer tests, so the corpus is tokenized once."""
    return tmp_path_factory.mktemp("prepared")


def write_run_config(path: Path, corpus: Path, data_dir: Path | None = None, *, model: str = "",
                     **train) -> Path:
    """A tiny, fast run config; keyword arguments override [train] keys."""
    settings = dict(tokens=24 * 8 * 32, batch_size=8, seq_len=32, num_checkpoints=4, eval_tokens=2048,
                    threads=1, warmup_fraction=0.1)
    settings.update(train)
    lines = ['name = "test"', "[data]", f'text = ["{corpus}"]', "vocab_size = 320"]
    if data_dir is not None:
        lines.append(f'dir = "{data_dir}"')
    lines += ["[model]", model or 'preset = "nano"', "[train]"]
    lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v) if not isinstance(v, list) else "[" + ", ".join(_toml(x) for x in v) + "]"


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m losslens ARGS` in a fresh process, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "losslens", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"losslens {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    """A small synthetic world (about 1 MB), generated once per test session."""
    from losslens.world import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("world") / "w"
    generate_world(WorldConfig(seed=0, size_mb=1.0), out)
    return out


@pytest.fixture(scope="session")
def world_run(tmp_path_factory, world_dir) -> Path:
    """A tiny model trained for a few dozen steps on the world: a real run dir with checkpoints."""
    from losslens.train.config import load_run_config
    from losslens.train.loop import train

    base = tmp_path_factory.mktemp("world_run")
    cfg_path = base / "run.toml"
    cfg_path.write_text(f'name = "world-nano"\n[data]\nworld_dir = "{world_dir}"\nvocab_size = 512\n'
                        '[model]\npreset = "nano"\n[train]\ntokens = 81920\nbatch_size = 16\nseq_len = 128\n'
                        'num_checkpoints = 3\neval_tokens = 4096\nthreads = 2\n')
    cfg, source = load_run_config(str(cfg_path))
    train(cfg, base / "run", config_source=str(source), quiet=True)
    return base / "run"
