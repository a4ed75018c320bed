-- The users whose 3D projection waits for a refresh (store/projection_refresh.py, jobs/projection.py). The vector
-- dispatcher records a user here once it has stored vectors of theirs, and enqueues the user's refresh a little
-- later (ORRERY_PROJECTION_REFRESH_DELAY_S): many syncs in a burst make one refresh. A refresh marks the row done;
-- one that dies counts a death, and the hourly cycle dispatcher enqueues what is still pending again while it has
-- died fewer than three times (a new request starts the count again). The user's row goes with the user.
CREATE TABLE runtime.projection_refresh (
    user_id      TEXT PRIMARY KEY REFERENCES public.users (user_id) ON DELETE CASCADE,
    requested_at TIMESTAMPTZ NOT NULL,
    refreshed_at TIMESTAMPTZ,
    deaths       INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
-- What the hourly sweep reads: the pending rows, oldest request first.
CREATE INDEX projection_refresh_pending_idx ON runtime.projection_refresh (requested_at)
    WHERE refreshed_at IS NULL OR refreshed_at < requested_at;
