"""Group commit: the writes that arrive together in one process commit in one transaction.

Each request hands its job to the process's one writer and waits. The writer takes whatever
jobs are queued (up to MAX_GROUP), has the group function do them all in one write
transaction (a few statements for the whole group, rather than a transaction per request),
commits once, and only then answers each request with its own outcome: a result, or the error
that job alone raised. The group function reports each job's own failures and stores nothing
for them. When it raises instead (a failure it could not pin on one job), the group is done
again one job at a time, each in a savepoint, so that only the job at fault fails. A
transaction that cannot begin or commit, or a database in trouble (OperationalError), fails
every job in it, none of which was answered before.

On SQLite this takes the write lock once per group rather than once per request: the
requests of a process no longer sleep in the busy handler waiting for each other's commits;
and the writers of the processes take turns by a file lock (`Database.writers_turn`), which
wakes the next as soon as one commits, rather than by SQLite's polling for its lock.
"""

import asyncio
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.db import Database

Job = TypeVar("Job")
Result = TypeVar("Result")

# Jobs per transaction at most: a bound on how long one group holds the write lock.
MAX_GROUP = 256

# Does a group's jobs in the session; returns each job's result or its own error, in order.
GroupFunction = Callable[[Session, Sequence[Job]], list[Result | Exception]]


@dataclass
class _Waiting(Generic[Job, Result]):
    job: Job
    done: asyncio.Future[Result]


class GroupCommit(Generic[Job, Result]):
    """One writer per process for jobs of one kind, committed a group at a time."""

    def __init__(self, db: Database, do_group: GroupFunction[Job, Result]) -> None:
        self.db = db
        self.do_group = do_group
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Waiting[Job, Result]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def run(self, job: Job) -> Result:
        """Do ``job`` in the next group; return its result, or raise its error, once the
        group's transaction has committed (or failed)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # the first job on the loop that serves the requests
            self._loop, self._queue = loop, asyncio.Queue()
            # One thread: the groups commit one after the other, and the writer never waits
            # for a thread of the pool that the requests hold.
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="group-commit")
            self._writer = loop.create_task(self._write(self._queue, self._thread))
        waiting = _Waiting[Job, Result](job, loop.create_future())
        self._queue.put_nowait(waiting)
        return await waiting.done

    async def close(self) -> None:
        """Stop the writer; a group being committed finishes first."""
        if self._writer is not None and self._thread is not None:
            self._writer.cancel()
            with suppress(asyncio.CancelledError):
                await self._writer
            self._thread.shutdown()
        self._loop = None

    async def _write(
        self, queue: asyncio.Queue[_Waiting[Job, Result]], thread: ThreadPoolExecutor
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await queue.get()]
            while len(group) < MAX_GROUP and not queue.empty():
                group.append(queue.get_nowait())
            outcomes = await loop.run_in_executor(thread, self.commit, [w.job for w in group])
            for waiting, outcome in zip(group, outcomes, strict=True):
                if waiting.done.cancelled():  # the client went away; its write stands
                    continue
                if isinstance(outcome, Exception):
                    waiting.done.set_exception(outcome)
                else:
                    waiting.done.set_result(outcome)

    def commit(self, jobs: Sequence[Job]) -> list[Result | Exception]:
        """Do the jobs in one transaction and commit it: each job's outcome, in order."""
        try:
            try:
                with self._transaction() as session:
                    outcomes = self.do_group(session, jobs)
                    if len(outcomes) != len(jobs):  # a bug, which must not stop the writer
                        raise RuntimeError(f"{len(jobs)} jobs, {len(outcomes)} outcomes")
                    return outcomes
            except OperationalError:
                raise  # the database's trouble (busy, gone, read-only), not a job's
            except Exception:
                if len(jobs) == 1:
                    raise
            # Rolled back: the jobs again, one at a time, each in a savepoint.
            with self._transaction() as session:
                return [self._alone(session, job) for job in jobs]
        except Exception as exc:
            # Nothing committed: every job fails, including those that went well.
            return [exc] * len(jobs)

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self.db.writers_turn(), self.db.session(write=True) as session:
            session.connection()  # begins the transaction: a failure here fails all
            yield session

    def _alone(self, session: Session, job: Job) -> Result | Exception:
        try:
            with session.begin_nested():
                [outcome] = self.do_group(session, [job])
        except OperationalError:
            raise
        except Exception as exc:
            return exc
        return outcome
