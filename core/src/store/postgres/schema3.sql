-- Version 3: a commit's writes in one call. The engine's commits arrive from many
-- threads at once; a node gathers those waiting into one call of `guichet_commit` (each
-- argument an array, one element per case written, or per row for the indexes), so the
-- statements and round trips a commit costs are shared by the cases of the batch.
-- A case still at the revision it was read at (`c_before`; null for a new case) is
-- written with everything it carries; the others are left untouched and their ids
-- returned (conflicts: each commit of a batch succeeds or fails on its own).
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
) RETURNS BIGINT[] LANGUAGE plpgsql AS $$
DECLARE
    ok BIGINT[];
BEGIN
    -- In id order: two commits over the same cases cannot deadlock.
    PERFORM 1 FROM cases WHERE id = ANY(c_id) ORDER BY id FOR UPDATE;
    WITH changed AS (
        UPDATE cases c
        SET rev = i.rev, number = i.number, procedure = i.procedure, version = i.version,
            open = i.open, record = i.record
        FROM unnest(c_id, c_before, c_rev, c_number, c_procedure, c_version, c_open, c_record)
            AS i(id, before, rev, number, procedure, version, open, record)
        WHERE c.id = i.id AND c.rev = i.before
        RETURNING c.id
    ), added AS (
        INSERT INTO cases (id, rev, number, procedure, version, applicant, bundle, open, record)
        SELECT id, rev, number, procedure, version, applicant, bundle, open, record
        FROM unnest(c_id, c_before, c_rev, c_number, c_procedure, c_version, c_applicant,
                    c_bundle, c_open, c_record)
            AS i(id, before, rev, number, procedure, version, applicant, bundle, open, record)
        WHERE i.before IS NULL
        RETURNING id
    )
    SELECT COALESCE(array_agg(id), '{}') INTO ok
    FROM (SELECT id FROM changed UNION ALL SELECT id FROM added) AS x;

    INSERT INTO history (case_id, seq, event)
    SELECT id, seq, event FROM unnest(c_id, c_seq, c_event) AS i(id, seq, event)
    WHERE id = ANY(ok);
    -- What indexes a case is rewritten: its open tasks by group, external tasks by topic,
    -- the groups with cards to deal with.
    DELETE FROM work WHERE case_id = ANY(ok);
    DELETE FROM topics WHERE case_id = ANY(ok);
    DELETE FROM card_groups WHERE case_id = ANY(ok);
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
    -- In the batch's order (the ids of `audit_pending` are the chain's order).
    INSERT INTO audit_pending (record)
    SELECT record FROM unnest(c_id, c_audit) WITH ORDINALITY AS i(id, record, o)
    WHERE id = ANY(ok) ORDER BY o;
    RETURN ARRAY(SELECT id FROM unnest(c_id) AS i(id) WHERE NOT id = ANY(ok));
END
$$;
