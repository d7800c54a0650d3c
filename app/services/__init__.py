"""Business operations. Each takes the request's session, runs inside its one transaction and
only flushes; the session dependency (app/deps.py) commits when the route returns and rolls
back when it raises, so a failed request leaves nothing.

Work that must own its transactions is not here: a training run (app/training.py), a CSV
import (app/csv_import.py) and the per-process caches (app/model_cache.py, app/live.py).
"""
