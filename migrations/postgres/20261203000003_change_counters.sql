-- Change counters, so a reader that keeps rows (`sweep serve`) reads only the stages that
-- moved since it last looked. Same in migrations/sqlite and migrations/postgres.
--
-- change_clock.seq counts changes to what a sweep's page shows. Triggers stamp each
-- change: a stage row whose state, attempt, holder, times, compute or failure changes
-- (not a heartbeat: nothing on a sweep's page shows it), and a metric recorded for a
-- stage (its epoch, loss, top-1), take a seq into runs.changed_seq and into
-- sweeps.changed_seq of every sweep that holds the stage. Stamps must follow commit
-- order, so that "the sweep's rows with changed_seq > T" is everything that changed
-- since a read made under sweeps.changed_seq = T: here the triggers are deferred to
-- commit, each transaction draws one seq there under the clock's row lock (held until
-- it commits, so the next one draws a higher seq only after), and a metric's trigger
-- locks its stage's row before the clock, so every transaction takes stage rows, then
-- the clock, then sweep rows: no deadlock. Triggers, not the writers' code, so every
-- writer stamps, whatever version it runs.
CREATE TABLE change_clock (
    id  BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO change_clock (id, seq) VALUES (1, 0);

ALTER TABLE runs ADD COLUMN changed_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sweeps ADD COLUMN changed_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_changed ON runs (changed_seq);

-- Stamps stage `target` (and its sweeps) with this transaction's seq, drawn once.
CREATE FUNCTION sweep_stamp(target TEXT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s BIGINT := NULLIF(current_setting('simclr_sweep.seq', true), '')::BIGINT;
BEGIN
    PERFORM 1 FROM runs WHERE id = target FOR UPDATE;
    IF s IS NULL THEN
        UPDATE change_clock SET seq = seq + 1 WHERE id = 1 RETURNING seq INTO s;
        PERFORM set_config('simclr_sweep.seq', s::TEXT, true);
    END IF;
    UPDATE runs SET changed_seq = s WHERE id = target AND changed_seq <> s;
    UPDATE sweeps SET changed_seq = s
        WHERE changed_seq <> s AND name IN (SELECT m.sweep FROM sweep_runs m WHERE m.run_id = target);
END $$;

CREATE FUNCTION runs_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sweep_stamp(NEW.id);
    RETURN NULL;
END $$;

CREATE FUNCTION metrics_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sweep_stamp(NEW.run_id);
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER runs_stamp AFTER UPDATE ON runs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.attempts IS DISTINCT FROM NEW.attempts
       OR OLD.lease_owner IS DISTINCT FROM NEW.lease_owner OR OLD.lease_host IS DISTINCT FROM NEW.lease_host
       OR OLD.started_at IS DISTINCT FROM NEW.started_at OR OLD.finished_at IS DISTINCT FROM NEW.finished_at
       OR OLD.compute_seconds IS DISTINCT FROM NEW.compute_seconds OR OLD.failure IS DISTINCT FROM NEW.failure)
    EXECUTE FUNCTION runs_stamp();

CREATE CONSTRAINT TRIGGER metrics_stamp_insert AFTER INSERT ON metrics
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION metrics_stamp();

CREATE CONSTRAINT TRIGGER metrics_stamp_update AFTER UPDATE ON metrics
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.value IS DISTINCT FROM NEW.value)
    EXECUTE FUNCTION metrics_stamp();
