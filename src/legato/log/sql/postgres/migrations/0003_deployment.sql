-- This log's deployment: a random id, made once as the log is created, the same for every
-- coordinator that shares the log. What Legato names on database servers that other
-- deployments may share (XA xids) carries it (DESIGN section 8).
CREATE TABLE legato_deployment (
    id text PRIMARY KEY
);
INSERT INTO legato_deployment (id) VALUES (replace(CAST(gen_random_uuid() AS text), '-', ''));
