-- The verification plan (sqlite): how the scheduler's versions are verified,
-- published for the runner workers that verify them. Owned by
-- `validator/src/store/workers.rs`; the twin is
-- migrations/postgres/0012_validator_verification_plan.sql.
--
-- verification_plan  JSON: the attempts, lease and probe failures allowed,
--                    the originality settings, the probe events (JSON
--                    Lines) and the benchmark agents' component hashes.
--                    Null until a scheduler with workers publishes one.
ALTER TABLE validator_scheduler ADD COLUMN verification_plan TEXT;
