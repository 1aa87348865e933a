-- Version 4: `guichet_commit` writes every case of its call that is still at the revision
-- it was read at, and returns the ids of the others (nothing of them written). A node
-- makes the commits of its engine threads together, one call for several independent
-- transitions (see `batch.rs`): a conflict on one case must not undo the others. A
-- commit whose cases belong together (a bundle) runs in a transaction of its own, which
-- its caller rolls back if any id is returned, as before.
-- A new case may come with the number it expects to take (`c_scope`, `c_n`: the node
-- knows the last number it took): taken in the call if it is the next one of its scope;
-- otherwise nothing is written and the call fails with SQLSTATE GU001, the scope's last
-- number in its detail, for the node to try again with the one after.
-- (Version 3's function, without the last two arguments, stays for nodes not yet
-- upgraded.)
CREATE FUNCTION guichet_commit(
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
    taken BIGINT;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Numbers first: the counter row is locked until the commit, so that numbers are
    -- taken in the order their cases commit.
    FOR k IN 1 .. cardinality(c_scope) LOOP
        CONTINUE WHEN c_scope[k] IS NULL;
        IF c_n[k] = 1 THEN
            INSERT INTO counters (scope, last) VALUES (c_scope[k], 1)
            ON CONFLICT (scope) DO NOTHING;
        ELSE
            UPDATE counters SET last = c_n[k] WHERE scope = c_scope[k] AND last = c_n[k] - 1;
        END IF;
        IF NOT FOUND THEN
            SELECT last INTO taken FROM counters WHERE scope = c_scope[k];
            RAISE EXCEPTION 'case number % of % is not the next one', c_n[k], c_scope[k]
                USING ERRCODE = 'GU001', DETAIL = COALESCE(taken, 0)::text;
        END IF;
    END LOOP;
    -- Several cases: locked in id order first, so that two commits over the same cases
    -- cannot deadlock.
    IF cardinality(c_id) > 1 THEN
        PERFORM 1 FROM cases WHERE id = ANY(c_id) ORDER BY id FOR UPDATE;
    END IF;
    -- One statement per case, by its key: a plan that joins the arrays with the table
    -- would be kept from when the table was small, and scan it whole once it has grown.
    FOR k IN 1 .. cardinality(c_id) LOOP
        IF c_before[k] IS NULL THEN
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
                -- What indexes the case as read, written again below.
                IF c_work[k] THEN
                    DELETE FROM work WHERE case_id = c_id[k];
                END IF;
                IF c_topics[k] THEN
                    DELETE FROM topics WHERE case_id = c_id[k];
                END IF;
                IF c_cards[k] THEN
                    DELETE FROM card_groups WHERE case_id = c_id[k];
                END IF;
            END IF;
        END IF;
    END LOOP;
    IF cardinality(conflicts) = cardinality(c_id) THEN
        RETURN conflicts;
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
