-- simclr-sweep store, schema 1 (PostgreSQL): the same tables as migrations/sqlite, with
-- BIGINT for every integer (the store reads them as i64).
-- Times are unix milliseconds. Run ids are sha256 hex content hashes.

-- Marks the database as ours: `sweep` refuses databases without this row.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('application', 'simclr-sweep');

CREATE TABLE sweeps (
    name        TEXT PRIMARY KEY,
    spec_path   TEXT NOT NULL,
    spec_text   TEXT NOT NULL,
    profile     TEXT,
    overrides   TEXT NOT NULL,          -- JSON list of "key=value"
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- One row per stage (a pretrain, or one evaluation of a pretrain), shared by every sweep
-- that contains it.
CREATE TABLE runs (
    id                  TEXT PRIMARY KEY,
    stage               TEXT NOT NULL CHECK (stage IN ('pretrain', 'eval')),
    parent_id           TEXT REFERENCES runs (id),
    label               TEXT NOT NULL,
    config              TEXT NOT NULL,  -- canonical JSON of the stage config
    dataset_fingerprint TEXT NOT NULL,
    semantics_version   BIGINT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts            BIGINT NOT NULL DEFAULT 0,
    lease_owner         TEXT,
    lease_host          TEXT,
    lease_pid           BIGINT,
    heartbeat_at        BIGINT,
    lease_expires_at    BIGINT,
    created_at          BIGINT NOT NULL,
    started_at          BIGINT,
    finished_at         BIGINT,
    compute_seconds     DOUBLE PRECISION NOT NULL DEFAULT 0,
    failure             TEXT,
    CHECK ((stage = 'eval') = (parent_id IS NOT NULL))
);
CREATE INDEX runs_state ON runs (state);
CREATE INDEX runs_parent ON runs (parent_id);

-- Which runs a sweep contains, in grid order, with the cell coordinates of each.
CREATE TABLE sweep_runs (
    sweep    TEXT NOT NULL REFERENCES sweeps (name) ON DELETE CASCADE,
    run_id   TEXT NOT NULL REFERENCES runs (id),
    position BIGINT NOT NULL,
    cell     TEXT NOT NULL,             -- JSON object: axis path -> value
    PRIMARY KEY (sweep, run_id)
);
CREATE INDEX sweep_runs_run ON sweep_runs (run_id);

-- One value per (run, name, step): a replay after a crash overwrites, never adds.
CREATE TABLE metrics (
    run_id TEXT NOT NULL REFERENCES runs (id),
    name   TEXT NOT NULL,
    step   BIGINT NOT NULL,
    value  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, name, step)
);

CREATE TABLE checkpoints (
    run_id     TEXT NOT NULL REFERENCES runs (id),
    step       BIGINT NOT NULL,         -- global step of the next step to run
    epoch      BIGINT NOT NULL,         -- epochs completed
    path       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, step)
);
