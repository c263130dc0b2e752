-- Slurm job arrays submitted for a sweep (`sweep submit --slurm`), so `sweep status`
-- can ask squeue about its workers. Same in migrations/sqlite and migrations/postgres.
CREATE TABLE slurm_jobs (
    job_id       TEXT PRIMARY KEY,
    sweep        TEXT NOT NULL REFERENCES sweeps (name) ON DELETE CASCADE,
    workers      BIGINT NOT NULL,
    log_dir      TEXT NOT NULL,
    submitted_at BIGINT NOT NULL
);
CREATE INDEX slurm_jobs_sweep ON slurm_jobs (sweep);
