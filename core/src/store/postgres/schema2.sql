-- Version 2: audit records are committed with their transitions into `audit_pending`
-- and sealed into the chain after, a batch at a time, by one node at a time (under the
-- lock of the head row). Transitions then no longer wait for each other's commit to
-- reach the disk (the head row was locked until then), so PostgreSQL commits them in
-- groups.
CREATE TABLE audit_pending (
    id BIGSERIAL PRIMARY KEY,
    record BYTEA NOT NULL
);
