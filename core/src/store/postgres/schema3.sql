-- Version 3: a commit's writes in one call, `guichet_commit`: one round trip instead of
-- one per table. Each argument is an array, with one element per case written (or per
-- row, for the indexes). A case still at the revision it was read at (`c_before`; null
-- for a new case) is written with everything it carries; the ids of the others (changed
-- meanwhile: a conflict) are returned, and the caller rolls the transaction back.
-- The commit does not wait for the log to reach the disk (`synchronous_commit` off for
-- its transaction): the node makes its commits durable together, by a flush that waits
-- for the log up to a later commit (see `CaseTable::flush`), and answers them only then.
CREATE FUNCTION guichet_commit(
    c_id BIGINT[], c_before BIGINT[], c_rev BIGINT[], c_number TEXT[], c_procedure TEXT[],
    c_version TEXT[], c_applicant TEXT[], c_bundle TEXT[], c_open BOOLEAN[],
    c_record BYTEA[], c_seq BIGINT[], c_event BYTEA[], c_listing BYTEA[],
    c_figures_rev BIGINT[], c_figures BYTEA[], c_audit BYTEA[],
    w_case BIGINT[], w_grp TEXT[], w_task TEXT[], w_entry BYTEA[],
    t_case BIGINT[], t_topic TEXT[], t_task TEXT[],
    g_case BIGINT[], g_grp TEXT[],
    tm_case BIGINT[], tm_due TIMESTAMPTZ[], tm_timers BYTEA[],
    n_case BIGINT[], n_seq BIGINT[], n_n BIGINT[], n_notice BYTEA[],
    n_queued TIMESTAMPTZ[], n_failed TIMESTAMPTZ[], n_inbox TEXT[]
) RETURNS BIGINT[] LANGUAGE plpgsql
AS $$
DECLARE
    ok BIGINT[];
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Several cases: locked in id order first, so that two commits over the same cases
    -- cannot deadlock.
    IF array_length(c_id, 1) > 1 THEN
        PERFORM 1 FROM cases WHERE id = ANY(c_id) ORDER BY id FOR UPDATE;
    END IF;
    -- One statement per case, by its key: a plan that joins the arrays with the table
    -- would be kept from when the table was small, and scan it whole once it has grown.
    ok := '{}';
    FOR k IN 1 .. coalesce(array_length(c_id, 1), 0) LOOP
        IF c_before[k] IS NULL THEN
            INSERT INTO cases (id, rev, number, procedure, version, applicant, bundle, open, record)
            VALUES (c_id[k], c_rev[k], c_number[k], c_procedure[k], c_version[k],
                    c_applicant[k], c_bundle[k], c_open[k], c_record[k]);
            ok := ok || c_id[k];
        ELSE
            UPDATE cases
            SET rev = c_rev[k], number = c_number[k], procedure = c_procedure[k],
                version = c_version[k], open = c_open[k], record = c_record[k]
            WHERE id = c_id[k] AND rev = c_before[k];
            IF FOUND THEN
                ok := ok || c_id[k];
                DELETE FROM work WHERE case_id = c_id[k];
                DELETE FROM topics WHERE case_id = c_id[k];
                DELETE FROM card_groups WHERE case_id = c_id[k];
            END IF;
        END IF;
    END LOOP;
    INSERT INTO history (case_id, seq, event)
    SELECT id, seq, event FROM unnest(c_id, c_seq, c_event) AS i(id, seq, event)
    WHERE id = ANY(ok);
    -- What indexes a case, cleared above, written again: its open tasks by group, external
    -- tasks by topic, the groups with cards to deal with.
    INSERT INTO work (grp, case_id, task, entry)
    SELECT grp, id, task, entry FROM unnest(w_case, w_grp, w_task, w_entry) AS i(id, grp, task, entry)
    WHERE id = ANY(ok);
    INSERT INTO topics (topic, case_id, task)
    SELECT topic, id, task FROM unnest(t_case, t_topic, t_task) AS i(id, topic, task)
    WHERE id = ANY(ok);
    INSERT INTO card_groups (grp, case_id)
    SELECT grp, id FROM unnest(g_case, g_grp) AS i(id, grp)
    WHERE id = ANY(ok);
    INSERT INTO timers (due, timers)
    SELECT due, timers FROM unnest(tm_case, tm_due, tm_timers) AS i(id, due, timers)
    WHERE id = ANY(ok);
    INSERT INTO notices (case_id, seq, n, notice, queued_for, failed_at, inbox)
    SELECT id, seq, n, notice, queued, failed, inbox
    FROM unnest(n_case, n_seq, n_n, n_notice, n_queued, n_failed, n_inbox)
        AS i(id, seq, n, notice, queued, failed, inbox)
    WHERE id = ANY(ok);
    INSERT INTO listings (case_id, listing)
    SELECT id, listing FROM unnest(c_id, c_listing) AS i(id, listing)
    WHERE listing IS NOT NULL AND id = ANY(ok)
    ON CONFLICT (case_id) DO UPDATE SET listing = EXCLUDED.listing;
    INSERT INTO figures (case_id, rev, figures)
    SELECT id, rev, figures FROM unnest(c_id, c_figures_rev, c_figures) AS i(id, rev, figures)
    WHERE figures IS NOT NULL AND id = ANY(ok)
    ON CONFLICT (case_id) DO UPDATE SET rev = EXCLUDED.rev, figures = EXCLUDED.figures;
    -- In the commit's order (the ids of `audit_pending` are the chain's order).
    INSERT INTO audit_pending (record)
    SELECT record FROM unnest(c_id, c_audit) WITH ORDINALITY AS i(id, record, o)
    WHERE id = ANY(ok) ORDER BY o;
    RETURN ARRAY(SELECT id FROM unnest(c_id) AS i(id) WHERE NOT id = ANY(ok));
END
$$;

-- A node's flush: a write of its own row whose transaction commits synchronously, so
-- PostgreSQL writes its log to the disk up to that commit, and with it every commit the
-- node made before.
CREATE TABLE guichet_flush (
    node TEXT PRIMARY KEY,
    flushes BIGINT NOT NULL
);

-- When the next timer is due, from indexes: the groups by due time (few are held), and
-- those held under a lease (the table keeps every timer set until it is due).
CREATE INDEX timers_leased ON timers (leased_until) WHERE leased_until IS NOT NULL;
