-- KPI events are due when the number of logged events changed since the last one. The highest `seq` is
-- not enough: sequence values are taken before commit, so a batch with lower values can commit later.
ALTER TABLE kpi_state ADD COLUMN emitted_count bigint NOT NULL DEFAULT 0;
ALTER TABLE kpi_state DROP COLUMN emitted_seq;
