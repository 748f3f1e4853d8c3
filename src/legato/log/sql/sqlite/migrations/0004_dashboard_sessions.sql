-- The dashboard's sessions: a login makes a random session id, the browser keeps it in
-- a cookie, the log keeps its SHA-256 and when it expires; logging out deletes the row.
-- In the log, so that every coordinator process and host sharing it knows the session.
CREATE TABLE legato_session (
    digest TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE INDEX legato_session_expires ON legato_session (expires_at);
