"""The PostgreSQL store's schema, as numbered migrations the store applies itself.

Every task of a store lives in one schema (``runjournal`` unless the URL names another with
``?schema=``). ``schema_version`` holds the number of the last migration applied; a store
applies the ones after it, in one transaction, under an advisory lock, before its first
write (a read of a database without the schema sees no tasks and creates nothing). A store
that finds a version newer than it knows refuses to write.

Order and gaplessness come from one row per task in ``tasks``: an append bumps its
``last_seq`` with ``UPDATE … RETURNING`` first, so the row lock orders appends to a task and
is held until commit; sequences are therefore given in commit order, and a rolled-back append
gives nothing back that anyone saw (no database sequences, whose values a rollback loses).
Every later statement of the append runs after the lock is held, in READ COMMITTED, so it
sees every append committed before it (in one statement with the lock it would not).
"""

from __future__ import annotations

#: ``{s}`` is the schema, quoted
MIGRATIONS: list[str] = [
    # 1: the journal
    """
    CREATE TABLE {s}.tasks (
        task text PRIMARY KEY,
        last_seq bigint NOT NULL DEFAULT 0,
        identity text NOT NULL,
        created timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE {s}.runs (
        task text NOT NULL,
        run_id text NOT NULL,
        run_seq bigint NOT NULL,
        PRIMARY KEY (task, run_id)
    );
    CREATE TABLE {s}.records (
        task text NOT NULL,
        seq bigint NOT NULL,
        run_id text NOT NULL,
        run_seq bigint NOT NULL,
        ts bigint NOT NULL,
        payload bytea NOT NULL,
        origin text,
        append_id bytea,
        PRIMARY KEY (task, seq)
    );
    CREATE INDEX records_run ON {s}.records (task, run_id, run_seq);

    -- One append, all or nothing: p_runs, p_ts, p_payloads, p_starts describe the items in
    -- order; p_exp_runs / p_exp_seqs the sequences the caller expects runs to be at.
    -- Errors: RJ001 a run is not at the expected sequence (detail: run, expected, actual);
    -- RJ002 a run_started for a run that has events (detail: run, its sequence); RJ003 the
    -- task's last sequence is not p_exp_last (detail: expected, actual).
    CREATE FUNCTION {s}.append(
        p_task text, p_identity text, p_runs text[], p_ts bigint[], p_payloads bytea[], p_starts boolean[],
        p_origin text, p_append_id bytea, p_exp_runs text[], p_exp_seqs bigint[], p_sync boolean, p_exp_last bigint
    ) RETURNS TABLE (seq bigint, run_seq bigint) LANGUAGE plpgsql AS $$
    DECLARE
        n int := cardinality(p_runs);
        last bigint;
        bad record;
        seqs bigint[];
        twice bigint;
    BEGIN
        IF p_sync THEN
            PERFORM set_config('synchronous_commit', 'on', true);
        END IF;
        UPDATE {s}.tasks t SET last_seq = t.last_seq + n WHERE t.task = p_task RETURNING t.last_seq INTO last;
        IF NOT FOUND THEN
            INSERT INTO {s}.tasks AS t (task, last_seq, identity) VALUES (p_task, 0, p_identity) ON CONFLICT (task) DO NOTHING;
            UPDATE {s}.tasks t SET last_seq = t.last_seq + n WHERE t.task = p_task RETURNING t.last_seq INTO last;
        END IF;
        IF p_exp_last IS NOT NULL AND last - n <> p_exp_last THEN
            RAISE EXCEPTION USING ERRCODE = 'RJ003', MESSAGE = 'journal moved on', DETAIL = p_exp_last || E'\\t' || (last - n);
        END IF;
        IF p_exp_runs IS NOT NULL THEN
            SELECT e.run_id, e.want, coalesce(r.run_seq, 0) AS have INTO bad
              FROM unnest(p_exp_runs, p_exp_seqs) AS e(run_id, want)
              LEFT JOIN {s}.runs r ON r.task = p_task AND r.run_id = e.run_id
             WHERE coalesce(r.run_seq, 0) <> e.want LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'RJ001', MESSAGE = 'sequence conflict',
                    DETAIL = bad.run_id || E'\\t' || bad.want || E'\\t' || bad.have;
            END IF;
        END IF;
        SELECT array_agg(x.run_seq ORDER BY x.ord), min(x.ord) FILTER (WHERE x.start AND x.run_seq <> 1)
          INTO seqs, twice
          FROM (SELECT i.ord, i.start,
                       coalesce(r.run_seq, 0) + row_number() OVER (PARTITION BY i.run_id ORDER BY i.ord) AS run_seq
                  FROM unnest(p_runs, p_starts) WITH ORDINALITY AS i(run_id, start, ord)
                  LEFT JOIN {s}.runs r ON r.task = p_task AND r.run_id = i.run_id) x;
        IF twice IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'RJ002', MESSAGE = 'run started twice',
                DETAIL = p_runs[twice::int] || E'\\t' || seqs[twice::int];
        END IF;
        INSERT INTO {s}.records (task, seq, run_id, run_seq, ts, payload, origin, append_id)
        SELECT p_task, last - n + i.ord, i.run_id, i.run_seq, i.ts, i.payload,
               CASE WHEN i.ord = 1 THEN p_origin END, CASE WHEN i.ord = 1 THEN p_append_id END
          FROM unnest(p_runs, seqs, p_ts, p_payloads) WITH ORDINALITY AS i(run_id, run_seq, ts, payload, ord);
        INSERT INTO {s}.runs AS r (task, run_id, run_seq)
        SELECT p_task, i.run_id, max(i.run_seq) FROM unnest(p_runs, seqs) AS i(run_id, run_seq) GROUP BY i.run_id
            ON CONFLICT (task, run_id) DO UPDATE SET run_seq = excluded.run_seq;
        RETURN QUERY SELECT last - n + i.ord, i.run_seq FROM unnest(seqs) WITH ORDINALITY AS i(run_seq, ord);
    END
    $$;
    """,
]
