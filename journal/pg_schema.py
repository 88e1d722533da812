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
    -- no index by run: reads go by sequence, run sequences are in runs (an index more would
    -- cost every append), and an append is looked up by its id only after a lost connection

    -- One append of one event (the common case, kept to three statements): the task's row,
    -- then the run's row, each locked by the statement that bumps it and held to commit.
    -- Errors: RJ001 the run is not at the expected sequence (detail: run, expected, actual);
    -- RJ002 a run_started for a run that has events (detail: run, its sequence); RJ003 the
    -- task's last sequence is not p_exp_last (detail: expected, actual).
    CREATE FUNCTION {s}.append1(
        p_task text, p_run text, p_ts bigint, p_payload bytea, p_start boolean, p_origin text,
        p_append_id bytea, p_exp bigint, p_sync boolean, p_exp_last bigint,
        OUT last_seq bigint, OUT run_seq bigint
    ) LANGUAGE plpgsql AS $$
    BEGIN
        IF p_sync THEN
            PERFORM set_config('synchronous_commit', 'on', true);
        END IF;
        UPDATE {s}.tasks t SET last_seq = t.last_seq + 1 WHERE t.task = p_task RETURNING t.last_seq INTO last_seq;
        IF NOT FOUND THEN
            INSERT INTO {s}.tasks (task, last_seq, identity) VALUES (p_task, 0, md5(random()::text || clock_timestamp()::text))
                ON CONFLICT (task) DO NOTHING;
            UPDATE {s}.tasks t SET last_seq = t.last_seq + 1 WHERE t.task = p_task RETURNING t.last_seq INTO last_seq;
        END IF;
        IF p_exp_last IS NOT NULL AND last_seq - 1 <> p_exp_last THEN
            RAISE EXCEPTION USING ERRCODE = 'RJ003', MESSAGE = 'journal moved on', DETAIL = p_exp_last || E'\\t' || (last_seq - 1);
        END IF;
        INSERT INTO {s}.runs AS r (task, run_id, run_seq) VALUES (p_task, p_run, 1)
            ON CONFLICT (task, run_id) DO UPDATE SET run_seq = r.run_seq + 1 RETURNING r.run_seq INTO run_seq;
        IF p_exp IS NOT NULL AND run_seq - 1 <> p_exp THEN
            RAISE EXCEPTION USING ERRCODE = 'RJ001', MESSAGE = 'sequence conflict', DETAIL = p_run || E'\\t' || p_exp || E'\\t' || (run_seq - 1);
        END IF;
        IF p_start AND run_seq <> 1 THEN
            RAISE EXCEPTION USING ERRCODE = 'RJ002', MESSAGE = 'run started twice', DETAIL = p_run || E'\\t' || run_seq;
        END IF;
        INSERT INTO {s}.records (task, seq, run_id, run_seq, ts, payload, origin, append_id)
            VALUES (p_task, last_seq, p_run, run_seq, p_ts, p_payload, p_origin, p_append_id);
    END
    $$;

    -- A batch, all or nothing: p_runs, p_ts, p_payloads, p_starts describe the items in order;
    -- p_exp_runs / p_exp_seqs the sequences the caller expects runs to be at. The same errors.
    -- Returns the last global sequence and each item's run sequence.
    CREATE FUNCTION {s}.append_batch(
        p_task text, p_runs text[], p_ts bigint[], p_payloads bytea[], p_starts boolean[],
        p_origin text, p_append_id bytea, p_exp_runs text[], p_exp_seqs bigint[], p_sync boolean, p_exp_last bigint,
        OUT last_seq bigint, OUT run_seqs bigint[]
    ) LANGUAGE plpgsql AS $$
    DECLARE
        n int := cardinality(p_runs);
        run text;
        k int;
        top bigint;
        want bigint;
        next jsonb := '{}';
    BEGIN
        IF p_sync THEN
            PERFORM set_config('synchronous_commit', 'on', true);
        END IF;
        UPDATE {s}.tasks t SET last_seq = t.last_seq + n WHERE t.task = p_task RETURNING t.last_seq INTO last_seq;
        IF NOT FOUND THEN
            INSERT INTO {s}.tasks (task, last_seq, identity) VALUES (p_task, 0, md5(random()::text || clock_timestamp()::text))
                ON CONFLICT (task) DO NOTHING;
            UPDATE {s}.tasks t SET last_seq = t.last_seq + n WHERE t.task = p_task RETURNING t.last_seq INTO last_seq;
        END IF;
        IF p_exp_last IS NOT NULL AND last_seq - n <> p_exp_last THEN
            RAISE EXCEPTION USING ERRCODE = 'RJ003', MESSAGE = 'journal moved on', DETAIL = p_exp_last || E'\\t' || (last_seq - n);
        END IF;
        IF p_exp_runs IS NOT NULL THEN  -- runs expected at a sequence that have no item here
            SELECT e.run_id, e.want, coalesce(r.run_seq, 0) AS have INTO run, want, top
              FROM unnest(p_exp_runs, p_exp_seqs) AS e(run_id, want)
              LEFT JOIN {s}.runs r ON r.task = p_task AND r.run_id = e.run_id
             WHERE e.run_id <> ALL (p_runs) AND coalesce(r.run_seq, 0) <> e.want LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'RJ001', MESSAGE = 'sequence conflict', DETAIL = run || E'\\t' || want || E'\\t' || top;
            END IF;
        END IF;
        -- each run's row bumped once by its number of items; its first sequence in the batch kept
        FOR run, k IN SELECT u.run_id, count(*) FROM unnest(p_runs) WITH ORDINALITY AS u(run_id, ord) GROUP BY u.run_id ORDER BY min(u.ord) LOOP
            INSERT INTO {s}.runs AS r (task, run_id, run_seq) VALUES (p_task, run, k)
                ON CONFLICT (task, run_id) DO UPDATE SET run_seq = r.run_seq + k RETURNING r.run_seq INTO top;
            want := p_exp_seqs[array_position(p_exp_runs, run)];
            IF want IS NOT NULL AND top - k <> want THEN
                RAISE EXCEPTION USING ERRCODE = 'RJ001', MESSAGE = 'sequence conflict', DETAIL = run || E'\\t' || want || E'\\t' || (top - k);
            END IF;
            next := next || jsonb_build_object(run, top - k + 1);
        END LOOP;
        run_seqs := array_fill(0::bigint, ARRAY[n]);
        FOR i IN 1..n LOOP
            run_seqs[i] := (next ->> p_runs[i])::bigint;
            next := jsonb_set(next, ARRAY[p_runs[i]], to_jsonb(run_seqs[i] + 1));
            IF p_starts[i] AND run_seqs[i] <> 1 THEN
                RAISE EXCEPTION USING ERRCODE = 'RJ002', MESSAGE = 'run started twice', DETAIL = p_runs[i] || E'\\t' || run_seqs[i];
            END IF;
        END LOOP;
        INSERT INTO {s}.records (task, seq, run_id, run_seq, ts, payload, origin, append_id)
        SELECT p_task, last_seq - n + i.ord, i.run_id, i.run_seq, i.ts, i.payload,
               CASE WHEN i.ord = 1 THEN p_origin END, CASE WHEN i.ord = 1 THEN p_append_id END
          FROM unnest(p_runs, run_seqs, p_ts, p_payloads) WITH ORDINALITY AS i(run_id, run_seq, ts, payload, ord);
    END
    $$;
    """,
    # 2: the archive (``runjournal archive``): ranges of records moved out of ``records``
    """
    CREATE TABLE {s}.archive (
        task text NOT NULL,
        first_seq bigint NOT NULL,
        last_seq bigint NOT NULL,
        runs text[] NOT NULL,
        bytes bigint NOT NULL,
        stored_bytes bigint NOT NULL,
        -- the unit's rows (seq, run_id, run_seq, ts, payload, origin) as a MessagePack list,
        -- zlib-compressed; NULL once pruned
        data bytea,
        PRIMARY KEY (task, first_seq)
    );
    """,
]
