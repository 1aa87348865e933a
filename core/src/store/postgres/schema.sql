-- Guichet's tables on PostgreSQL, version 1. Records are stored as the JSON bytes the
-- embedded store keeps (history events exactly as the audit chain hashes them); the
-- columns beside them are what queries select and order by.

CREATE SEQUENCE case_ids;

CREATE TABLE cases (
    id BIGINT PRIMARY KEY,
    rev BIGINT NOT NULL,
    number TEXT NOT NULL,
    procedure TEXT NOT NULL,
    version TEXT NOT NULL,
    applicant TEXT NOT NULL,
    bundle TEXT,
    open BOOLEAN NOT NULL,
    record BYTEA NOT NULL
);
CREATE UNIQUE INDEX cases_by_number ON cases (number);
CREATE INDEX cases_by_applicant ON cases (applicant, id);
CREATE INDEX cases_by_bundle ON cases (bundle, id) WHERE bundle IS NOT NULL;
CREATE INDEX open_cases_by_version ON cases (procedure, version, id) WHERE open;

-- The last number drawn per scope (PLAN-LUP-2026), updated in the transition's
-- transaction: gap-free across nodes.
CREATE TABLE counters (
    scope TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);

-- Each event as stored: its JSON, then a newline and the tasks it closed, if any.
CREATE TABLE history (
    case_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    event BYTEA NOT NULL,
    PRIMARY KEY (case_id, seq)
);

-- Open tasks by group (the worklist; `entry` null until the engine writes it) and
-- external tasks by topic.
CREATE TABLE work (
    grp TEXT NOT NULL,
    case_id BIGINT NOT NULL,
    task TEXT NOT NULL,
    entry BYTEA,
    PRIMARY KEY (grp, case_id, task)
);
CREATE INDEX work_by_case ON work (case_id);
CREATE TABLE topics (
    topic TEXT NOT NULL,
    case_id BIGINT NOT NULL,
    task TEXT NOT NULL,
    PRIMARY KEY (topic, case_id, task)
);
CREATE INDEX topics_by_case ON topics (case_id);

-- Groups with cards still to be dealt with, per case.
CREATE TABLE card_groups (
    grp TEXT NOT NULL,
    case_id BIGINT NOT NULL,
    PRIMARY KEY (grp, case_id)
);
CREATE INDEX card_groups_by_case ON card_groups (case_id);

CREATE TABLE listings (
    case_id BIGINT PRIMARY KEY,
    listing BYTEA NOT NULL
);

CREATE TABLE figures (
    case_id BIGINT PRIMARY KEY,
    rev BIGINT NOT NULL,
    figures BYTEA NOT NULL
);

-- The timers one transition set, due at the earliest; the node that takes a group
-- (`leased_by`) holds it until `leased_until`, after which another node may.
CREATE TABLE timers (
    id BIGSERIAL PRIMARY KEY,
    due TIMESTAMPTZ NOT NULL,
    timers BYTEA NOT NULL,
    leased_by TEXT,
    leased_until TIMESTAMPTZ
);
CREATE INDEX timers_by_due ON timers (due);

CREATE TABLE notices (
    case_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    n BIGINT NOT NULL,
    notice BYTEA NOT NULL,
    -- The next attempt, while queued.
    queued_for TIMESTAMPTZ,
    -- When it failed for good.
    failed_at TIMESTAMPTZ,
    -- The staff member whose in-app inbox holds it.
    inbox TEXT,
    -- The node delivering it, until when (another node takes it over after).
    leased_by TEXT,
    leased_until TIMESTAMPTZ,
    PRIMARY KEY (case_id, seq, n)
);
CREATE INDEX notices_queue ON notices (queued_for) WHERE queued_for IS NOT NULL;
CREATE INDEX notices_failed ON notices (failed_at) WHERE failed_at IS NOT NULL;
CREATE INDEX notices_inbox ON notices (inbox, case_id, seq, n) WHERE inbox IS NOT NULL;

-- The audit chain: one row per entry, appended under the lock of its head's row, so the
-- chain is one chain whichever node commits.
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    entry BYTEA NOT NULL
);
CREATE TABLE audit_head (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    next BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (one, next, hash)
VALUES (TRUE, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE versions (
    procedure TEXT NOT NULL,
    version TEXT NOT NULL,
    record BYTEA NOT NULL,
    PRIMARY KEY (procedure, version)
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    record BYTEA NOT NULL
);
CREATE TABLE incidents (
    id BIGSERIAL PRIMARY KEY,
    record BYTEA NOT NULL
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE files (
    sha256 TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL
);
