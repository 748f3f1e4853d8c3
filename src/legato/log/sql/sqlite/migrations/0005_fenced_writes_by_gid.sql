-- A fenced write finds its row by gid (the primary key) and checks the owner there. The
-- index on lease_owner let PostgreSQL's planner join a group commit's writes to every
-- row their coordinator leases instead (a merge join on the owner, then a filter on the
-- gid): each write cost as much as the coordinator's leases, in flight or dead and not
-- yet vacuumed (measured: a hundred times as much as by gid with 10,000 leased, as after
-- a takeover). Renewals find their rows by gid too, and release_owner through the
-- unended rows' index: nothing needs this one, and every write that moves a lease had
-- to maintain it.
DROP INDEX legato_tx_owner;
