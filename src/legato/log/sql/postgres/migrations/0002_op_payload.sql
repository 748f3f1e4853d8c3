-- An op's request, for ops whose call is given at run time (a TCC branch's confirm and
-- cancel, registered while the transaction is prepared): the HTTP call as JSON.
ALTER TABLE legato_op ADD COLUMN payload text;
