-- The stuck transactions, newest first: the dashboard lists them above every page of
-- transactions. Without an index of their own, finding that there are none meant
-- reading every row of the log: the time grew with the log (bench/log_growth.py).
-- Stuck ones are few: the index is small, and a write that leaves stuck empty never
-- touches it.
CREATE INDEX legato_tx_stuck ON legato_tx (created_at) WHERE stuck IS NOT NULL;
