"""Two evaluation processes writing to one results file at once lose nothing."""

from __future__ import annotations

import multiprocessing as mp

from losslens.store import MetricRow, Store

N_CKPT = 120
N_METRICS = 10


def _value(step: int, k: int) -> float:
    return ((step * 31 + k * 7) % 100) / 100


def _writer(db: str, worker: int, start, done) -> None:
    with Store(db) as st:
        start.wait()  # both processes begin together, so their transactions interleave
        own = st.upsert_run(f"worker-{worker}", params=1000 + worker)
        for step in range(N_CKPT):
            rows = [MetricRow(f"task{k % 3}", f"m{k}", _value(step, k), n=50) for k in range(N_METRICS)]
            if step % 2:  # one explicit transaction around several upserts
                with st.transaction():
                    ckpt = st.upsert_checkpoint(own, step=step, tokens=step * 10, loss=3.0 - step / 100)
                    st.upsert_metrics(ckpt, rows)
            else:  # each call its own transaction
                ckpt = st.upsert_checkpoint(own, step=step, tokens=step * 10, loss=3.0 - step / 100)
                st.upsert_metrics(ckpt, rows)
            # Both workers also evaluate the same shared run's checkpoints: upserts of one key.
            shared = st.upsert_run("shared", params=500)
            ckpt = st.upsert_checkpoint(shared, step=step, tokens=step * 10, loss=2.0)
            st.upsert_metrics(ckpt, rows)
            st.upsert_heldout(ckpt, corpus=f"val{worker}", nats_per_token=2.0, bits_per_byte=1.0, n_tokens=10,
                              n_bytes=30)
    done.put(worker)


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    db = str(tmp_path / "results.db")
    ctx = mp.get_context("spawn")  # a fresh interpreter each, like two `losslens eval` processes
    start, done = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db, w, start, done)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(done.get(timeout=5) for _ in procs) == [1, 2]

    with Store(db) as st:
        assert st.counts() == {"runs": 3, "checkpoints": 3 * N_CKPT, "heldout": 2 * N_CKPT,
                               "metrics": 3 * N_CKPT * N_METRICS, "tasks": 3}
        df = st.tidy()
    assert len(df) == 3 * N_CKPT * N_METRICS
    expected = [_value(int(s), int(m[1:])) for s, m in zip(df["step"], df["metric"])]
    assert df["value"].tolist() == expected
    assert df.groupby("model").size().to_dict() == {m: N_CKPT * N_METRICS for m in ("shared", "worker-1",
                                                                                       "worker-2")}
