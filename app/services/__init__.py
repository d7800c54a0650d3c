"""Business operations. Each takes a session, runs inside the caller's transaction, and only
flushes: the request's session commits (or rolls back) once, so a failed request leaves nothing."""
