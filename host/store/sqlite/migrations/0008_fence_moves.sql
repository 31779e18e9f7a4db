-- How many commits moved a fence (changed a tenant, a module, or an instance another
-- invocation may be running), from any process. The writers of `--processes N` share one
-- file: a peer's claims, journal rows and settles change nothing a run has read, and only
-- when this count moved must a writer read its runs' fences again.
CREATE TABLE fence_moves (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    moves INTEGER NOT NULL
);
INSERT INTO fence_moves (id, moves) VALUES (0, 0);
