"""Worker process pools that start all their workers at once.

Since CPython 3.11 a ``ProcessPoolExecutor`` whose start method is not fork starts its
workers one submitted job at a time. When a worker dies (killed for memory, a signal) while
the pool is still starting others, its manager thread terminates the workers it knows of
as the submitting thread adds another: the new one is never terminated and
``shutdown(wait=True)`` waits for it forever, or the manager thread itself fails
("dictionary changed size during iteration") and no pending job ever completes. Either way a
command that should report the death hangs (about one run in five of
``test_a_killed_worker_process_is_a_clear_error``, which kills a worker after the first job).
Started all at once, as before 3.11 and as with fork, no worker is started once the
manager runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not at run time: it imports multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.context import BaseContext


def process_pool(workers: int, context: BaseContext, initializer: Callable[..., None],
                 initargs: tuple[Any, ...]) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, all started with its first job. Raises OSError if
    it cannot be made; so may its first ``submit``, when the processes start."""
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=initializer,
                               initargs=initargs)
    # The switch CPython itself uses for fork (gh-90622): launch every worker when the
    # manager thread starts, none later. A Python without it ignores the attribute, and
    # its pool starts workers as it goes.
    pool._safe_to_dynamically_spawn_children = False  # type: ignore[attr-defined]
    return pool
