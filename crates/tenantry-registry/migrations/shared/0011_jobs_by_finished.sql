-- The console's charts read the last day's finished jobs of one kind (durations by plan, failures by code) on
-- every view of the Jobs page: an index, so that is a range read, not a scan of every job ever run.
CREATE INDEX jobs_by_kind_finished ON jobs (kind, finished_at);
