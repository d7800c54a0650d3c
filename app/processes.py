"""Telling whether a process still runs, for what a dead one leaves behind (its metrics)."""

import os


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, as another user
        return True
    return True
