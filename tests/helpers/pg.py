"""The PostgreSQL server the tests use: ``$RUNJOURNAL_TEST_PG`` (a ``postgresql://`` URL to a
database the tests may make schemas in; ``.ci/run`` starts a throwaway cluster and sets it).

Without it, or without psycopg, the PostgreSQL tests skip, saying why; under ``CI=true``
they fail instead, since CI must run them.
"""

from __future__ import annotations

import hashlib
import os

import pytest

ENV = "RUNJOURNAL_TEST_PG"


def server_url() -> str:
    """The test server's URL, or a skip (a failure under CI) saying what is missing."""
    url = os.environ.get(ENV)
    why = None
    if not url:
        why = f"no PostgreSQL server for the tests: set {ENV} to a postgresql:// URL (.ci/run starts one)"
    else:
        try:
            import psycopg
        except ImportError:
            why = "psycopg is not installed: pip install -e '.[test]'"
        else:
            try:
                psycopg.connect(url, connect_timeout=5).close()
            except psycopg.Error as e:
                why = f"the PostgreSQL server at {ENV} cannot be reached: {' '.join(str(e).split())}"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI=true: the PostgreSQL tests must run)")
        pytest.skip(why)
    return url


def schema_for(key: str) -> str:
    return "t_" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def store_url(key: str) -> str:
    """A URL naming a schema of its own for ``key`` (a test's tmp_path)."""
    url = server_url()
    return f"{url}{'&' if '?' in url else '?'}schema={schema_for(key)}"


def drop_schema(key: str) -> None:
    import psycopg

    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema_for(key)} CASCADE")
