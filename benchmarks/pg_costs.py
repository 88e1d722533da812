"""Where a PostgreSQL append's time goes, on one connection (docs/benchmarks.md).

    .venv/bin/python benchmarks/pg_costs.py URL [--n 4000]

In a scratch schema (dropped afterwards), each timed N times, per operation in µs:
a `SELECT 1` round trip; the raw loop's INSERT (a table with a primary key); an INSERT into a
table shaped like the store's records; the store's `append1` function called directly; and
`PostgresStore.append` whole (durability none), with and without its notifications. Prints
one JSON object.
"""

from __future__ import annotations

import json
import sys
import time

import psycopg

from runjournal.journal import events as ev
from runjournal.journal import open_store
from runjournal.journal.events import encoder
from runjournal.journal.postgres import PostgresStore, parse_url

SCHEMA = "runjournal_costs"
EVENT = ev.OutputChunk(index=1, stream="stdout", data=b"x" * 120)


def timed(n: int, step) -> float:
    step(0)
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        step(i)
    return round((time.perf_counter() - t0) / n * 1e6)


def main() -> None:
    url = sys.argv[1]
    n = int(sys.argv[sys.argv.index("--n") + 1]) if "--n" in sys.argv else 4000
    conninfo, _ = parse_url(url)
    store_url = f"{url}{'&' if '?' in url else '?'}schema={SCHEMA}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    try:
        with open_store(store_url, durability="none") as store:
            store.prepare("t")
        payload = encoder.encode(EVENT)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute(f"CREATE TABLE {SCHEMA}.raw (k text NOT NULL, n bigint NOT NULL, payload bytea NOT NULL, PRIMARY KEY (k, n))")
            conn.execute(f"CREATE TABLE {SCHEMA}.shaped (LIKE {SCHEMA}.records INCLUDING ALL)")
            result = {
                "select_1_us": timed(n, lambda i: conn.execute("SELECT 1").fetchall()),
                "raw_insert_us": timed(n, lambda i: conn.execute(f"INSERT INTO {SCHEMA}.raw VALUES (%s, %s, %s)", ("k", i, payload))),
                "records_insert_us": timed(n, lambda i: conn.execute(
                    f"INSERT INTO {SCHEMA}.shaped VALUES (%s, %s, %s, %s, %s, %s, NULL, NULL)", ("t", i, "r", i, time.time_ns(), payload))),
                "append1_call_us": timed(n, lambda i: conn.execute(
                    f"SELECT * FROM {SCHEMA}.append1(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    ("f", "r", time.time_ns(), payload, False, None, i.to_bytes(8, "little"), None, False, None)).fetchall()),
            }  # fmt: skip
        with open_store(store_url, durability="none") as store:
            result["store_append_us"] = timed(n, lambda i: store.append("s", "r", EVENT))
        with open_store(store_url, durability="none") as store:
            store._notify = lambda task: None  # what the notifications cost, by their absence
            result["store_append_without_notify_us"] = timed(n, lambda i: store.append("s2", "r", EVENT))
        assert isinstance(store, PostgresStore)
        print(json.dumps(result))
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
