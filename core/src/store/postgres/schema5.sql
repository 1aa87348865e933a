-- Version 5: `guichet_commit_batch`, version 4's `guichet_commit` with fewer calls and
-- fewer statements per call (each statement the function runs costs PostgreSQL an
-- executor start, most of a call's CPU; each call a transaction and a round trip):
-- - a new case that expects a number its node did not get (another node took it, or a
--   call before it that expected the one before failed) is not written and its id is
--   returned with the conflicts, instead of failing the call: new cases go in the same
--   calls as the other commits, several of one scope in a row (`n`, `n + 1`, ...);
-- - cases that exist, when their ids come in ascending order (nodes send them so), are
--   locked in that order by their own updates, so that two calls over the same cases
--   cannot deadlock; a call that sends them in another order gets them locked first,
--   as version 4 locked every call's (a statement planned again at every call);
-- - what indexed the cases as read (worklist, topics, card groups) is cleared by one
--   statement per table for the whole call instead of one per case.
-- Version 4's function stays for nodes not yet upgraded.
--
-- Case records of a few kB are no longer compressed (each write compressed the record and
-- each read uncompressed it, to save a few hundred bytes a row).
ALTER TABLE cases SET (toast_tuple_target = 8160);

CREATE FUNCTION guichet_commit_batch(
    c_id BIGINT[], c_before BIGINT[], c_rev BIGINT[], c_number TEXT[], c_procedure TEXT[],
    c_version TEXT[], c_applicant TEXT[], c_bundle TEXT[], c_open BOOLEAN[],
    c_record BYTEA[], c_seq BIGINT[], c_event BYTEA[], c_listing BYTEA[],
    c_figures_rev BIGINT[], c_figures BYTEA[], c_audit BYTEA[],
    c_work BOOLEAN[], c_topics BOOLEAN[], c_cards BOOLEAN[],
    w_case BIGINT[], w_grp TEXT[], w_task TEXT[], w_entry BYTEA[],
    t_case BIGINT[], t_topic TEXT[], t_task TEXT[],
    g_case BIGINT[], g_grp TEXT[],
    tm_case BIGINT[], tm_due TIMESTAMPTZ[], tm_timers BYTEA[],
    n_case BIGINT[], n_seq BIGINT[], n_n BIGINT[], n_notice BYTEA[],
    n_queued TIMESTAMPTZ[], n_failed TIMESTAMPTZ[], n_inbox TEXT[],
    c_scope TEXT[], c_n BIGINT[]
) RETURNS BIGINT[] LANGUAGE plpgsql
AS $$
DECLARE
    conflicts BIGINT[] := '{}';
    -- New cases whose number was not the next one.
    skipped BIGINT[] := '{}';
    taken BIGINT;
    -- Whether a new case's number is the next one of its scope.
    ours BOOLEAN;
    sorted BOOLEAN := true;
    prev BIGINT;
    clear_work BIGINT[] := '{}';
    clear_topics BIGINT[] := '{}';
    clear_cards BIGINT[] := '{}';
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Numbers first, in the order of the arrays (a scope's numbers in a row): the counter
    -- row is locked until the commit, so that numbers are taken in the order their cases
    -- commit.
    FOR k IN 1 .. cardinality(c_scope) LOOP
        CONTINUE WHEN c_scope[k] IS NULL;
        IF c_n[k] = 1 THEN
            INSERT INTO counters (scope, last) VALUES (c_scope[k], 1)
            ON CONFLICT (scope) DO NOTHING;
            ours := FOUND;
        ELSE
            UPDATE counters SET last = c_n[k] WHERE scope = c_scope[k] AND last = c_n[k] - 1;
            ours := FOUND;
            IF NOT ours THEN
                -- The number before may be another call's, not committed yet (the update
                -- saw the row as it was before that call): wait for that call, then look
                -- again at the row as it left it.
                SELECT last INTO taken FROM counters WHERE scope = c_scope[k] FOR UPDATE;
                ours := COALESCE(taken = c_n[k] - 1, false);
                IF ours THEN
                    UPDATE counters SET last = c_n[k] WHERE scope = c_scope[k];
                END IF;
            END IF;
        END IF;
        IF NOT ours THEN
            skipped := skipped || c_id[k];
        END IF;
    END LOOP;
    -- Several cases: locked in id order, so that two commits over the same cases cannot
    -- deadlock; by the updates below when the ids of the cases that exist come in order.
    FOR k IN 1 .. cardinality(c_id) LOOP
        CONTINUE WHEN c_before[k] IS NULL;
        IF c_id[k] < prev THEN
            sorted := false;
            EXIT;
        END IF;
        prev := c_id[k];
    END LOOP;
    IF NOT sorted THEN
        PERFORM 1 FROM cases WHERE id = ANY(c_id) ORDER BY id FOR UPDATE;
    END IF;
    conflicts := skipped;
    -- One statement per case, by its key: a plan that joins the arrays with the table
    -- would be kept from when the table was small, and scan it whole once it has grown.
    FOR k IN 1 .. cardinality(c_id) LOOP
        IF c_before[k] IS NULL THEN
            CONTINUE WHEN c_id[k] = ANY(skipped);
            INSERT INTO cases (id, rev, number, procedure, version, applicant, bundle, open, record)
            VALUES (c_id[k], c_rev[k], c_number[k], c_procedure[k], c_version[k],
                    c_applicant[k], c_bundle[k], c_open[k], c_record[k]);
        ELSE
            UPDATE cases
            SET rev = c_rev[k], number = c_number[k], procedure = c_procedure[k],
                version = c_version[k], open = c_open[k], record = c_record[k]
            WHERE id = c_id[k] AND rev = c_before[k];
            IF NOT FOUND THEN
                conflicts := conflicts || c_id[k];
            ELSE
                -- What indexes the case as read, cleared and written again below.
                IF c_work[k] THEN
                    clear_work := clear_work || c_id[k];
                END IF;
                IF c_topics[k] THEN
                    clear_topics := clear_topics || c_id[k];
                END IF;
                IF c_cards[k] THEN
                    clear_cards := clear_cards || c_id[k];
                END IF;
            END IF;
        END IF;
    END LOOP;
    IF cardinality(conflicts) = cardinality(c_id) THEN
        RETURN conflicts;
    END IF;
    IF cardinality(clear_work) > 0 THEN
        DELETE FROM work WHERE case_id = ANY(clear_work);
    END IF;
    IF cardinality(clear_topics) > 0 THEN
        DELETE FROM topics WHERE case_id = ANY(clear_topics);
    END IF;
    IF cardinality(clear_cards) > 0 THEN
        DELETE FROM card_groups WHERE case_id = ANY(clear_cards);
    END IF;
    INSERT INTO history (case_id, seq, event)
    SELECT * FROM unnest(c_id, c_seq, c_event) AS i(id, seq, event)
    WHERE NOT id = ANY(conflicts);
    -- What indexes a case: its open tasks by group, external tasks by topic, the groups
    -- with cards to deal with.
    IF cardinality(w_case) > 0 THEN
        INSERT INTO work (case_id, grp, task, entry)
        SELECT * FROM unnest(w_case, w_grp, w_task, w_entry) AS i(id, grp, task, entry)
        WHERE NOT id = ANY(conflicts);
    END IF;
    IF cardinality(t_case) > 0 THEN
        INSERT INTO topics (case_id, topic, task)
        SELECT * FROM unnest(t_case, t_topic, t_task) AS i(id, topic, task)
        WHERE NOT id = ANY(conflicts);
    END IF;
    IF cardinality(g_case) > 0 THEN
        INSERT INTO card_groups (case_id, grp)
        SELECT * FROM unnest(g_case, g_grp) AS i(id, grp)
        WHERE NOT id = ANY(conflicts);
    END IF;
    IF cardinality(tm_case) > 0 THEN
        INSERT INTO timers (due, timers)
        SELECT due, timers FROM unnest(tm_case, tm_due, tm_timers) AS i(id, due, timers)
        WHERE NOT id = ANY(conflicts);
    END IF;
    IF cardinality(n_case) > 0 THEN
        INSERT INTO notices (case_id, seq, n, notice, queued_for, failed_at, inbox)
        SELECT * FROM unnest(n_case, n_seq, n_n, n_notice, n_queued, n_failed, n_inbox)
            AS i(id, seq, n, notice, queued, failed, inbox)
        WHERE NOT id = ANY(conflicts);
    END IF;
    IF cardinality(array_remove(c_listing, NULL)) > 0 THEN
        INSERT INTO listings (case_id, listing)
        SELECT id, listing FROM unnest(c_id, c_listing) AS i(id, listing)
        WHERE listing IS NOT NULL AND NOT id = ANY(conflicts)
        ON CONFLICT (case_id) DO UPDATE SET listing = EXCLUDED.listing;
    END IF;
    IF cardinality(array_remove(c_figures, NULL)) > 0 THEN
        INSERT INTO figures (case_id, rev, figures)
        SELECT id, rev, figures FROM unnest(c_id, c_figures_rev, c_figures) AS i(id, rev, figures)
        WHERE figures IS NOT NULL AND NOT id = ANY(conflicts)
        ON CONFLICT (case_id) DO UPDATE SET rev = EXCLUDED.rev, figures = EXCLUDED.figures;
    END IF;
    -- In the commit's order (the ids of `audit_pending` are the chain's order).
    INSERT INTO audit_pending (record)
    SELECT record FROM unnest(c_id, c_audit) WITH ORDINALITY AS i(id, record, o)
    WHERE NOT id = ANY(conflicts)
    ORDER BY o;
    RETURN conflicts;
END
$$;
