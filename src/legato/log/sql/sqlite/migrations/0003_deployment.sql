-- This log's deployment: a random id, made once as the log is created, the same for every
-- coordinator that shares the log. What Legato names on database servers that other
-- deployments may share (XA xids) carries it (DESIGN section 8).
CREATE TABLE legato_deployment (
    id TEXT PRIMARY KEY
);
INSERT INTO legato_deployment (id) VALUES (lower(hex(randomblob(16))));
