-- The stuck transactions, newest first: the dashboard lists them above every page of
-- transactions. Without an index of their own, finding that there are none meant
-- reading every row of the log (measured: 0.5 ms on an empty log, 20 ms with 100,000
-- ended transactions on PostgreSQL, 37 ms on SQLite). Stuck ones are few: the index
-- is small, and a write that leaves stuck empty never touches it.
CREATE INDEX legato_tx_stuck ON legato_tx (created_at) WHERE stuck IS NOT NULL;
