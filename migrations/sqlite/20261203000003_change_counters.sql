-- Change counters, so a reader that keeps rows (`sweep serve`) reads only the stages that
-- moved since it last looked. Same in migrations/sqlite and migrations/postgres.
--
-- change_clock.seq counts changes to what a sweep's page shows. Triggers stamp each
-- change: a stage row whose state, attempt, holder, times, compute or failure changes
-- (not a heartbeat: nothing on a sweep's page shows it), and a metric recorded for a
-- stage (its epoch, loss, top-1), take the next seq into runs.changed_seq and into
-- sweeps.changed_seq of every sweep that holds the stage. Stamps follow commit order
-- (SQLite has one writer at a time), so "the sweep's rows with changed_seq > T" is
-- everything that changed since a read made under sweeps.changed_seq = T. Triggers,
-- not the writers' code, so every writer stamps, whatever version it runs.
CREATE TABLE change_clock (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO change_clock (id, seq) VALUES (1, 0);

ALTER TABLE runs ADD COLUMN changed_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sweeps ADD COLUMN changed_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_changed ON runs (changed_seq);

-- A stage row changed in what a page shows, or marked by a metric's trigger below
-- (changed_seq = -1): stamped with the next seq, with its sweeps.
CREATE TRIGGER runs_stamp AFTER UPDATE ON runs
WHEN NEW.changed_seq = -1
  OR OLD.state IS NOT NEW.state OR OLD.attempts IS NOT NEW.attempts
  OR OLD.lease_owner IS NOT NEW.lease_owner OR OLD.lease_host IS NOT NEW.lease_host
  OR OLD.started_at IS NOT NEW.started_at OR OLD.finished_at IS NOT NEW.finished_at
  OR OLD.compute_seconds IS NOT NEW.compute_seconds OR OLD.failure IS NOT NEW.failure
BEGIN
    UPDATE change_clock SET seq = seq + 1;
    UPDATE runs SET changed_seq = (SELECT seq FROM change_clock) WHERE id = NEW.id;
    UPDATE sweeps SET changed_seq = (SELECT seq FROM change_clock)
        WHERE name IN (SELECT sweep FROM sweep_runs WHERE run_id = NEW.id);
END;

CREATE TRIGGER metrics_stamp_insert AFTER INSERT ON metrics
BEGIN
    UPDATE runs SET changed_seq = -1 WHERE id = NEW.run_id;
END;

CREATE TRIGGER metrics_stamp_update AFTER UPDATE ON metrics
WHEN OLD.value IS NOT NEW.value
BEGIN
    UPDATE runs SET changed_seq = -1 WHERE id = NEW.run_id;
END;
