"""Process-shared queues (layer 2; imports layers 0-1 only).

* :mod:`._native`   -- robust process-shared mutex and futex wait/wake through ctypes.
* :mod:`._ring`     -- the shared ring of records every queue is made of (data-flow diagram,
  crash-safety argument).
* :mod:`._external` -- big items: one shared-memory segment each, received without a copy.
* :mod:`._queue`    -- Queue, JoinableQueue, SimpleQueue (public home: :mod:`procly.queues`).
"""
