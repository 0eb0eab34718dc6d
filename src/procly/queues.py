"""Process-shared queues: the public home of the classes (drop-in for
:mod:`multiprocessing.queues`).

Beyond the standard library: no feeder thread (``put`` returns once the item is in shared
memory, so there is no join deadlock and ``cancel_join_thread`` loses nothing), batch
``put_many``/``get_many``, items of any size with big buffers received without a copy, and
a queue that stays usable when a producer or consumer is SIGKILLed mid-operation.
"""

from __future__ import annotations

from queue import Empty as Empty
from queue import Full as Full

from ._queues._queue import JoinableQueue as JoinableQueue
from ._queues._queue import Queue as Queue
from ._queues._queue import SimpleQueue as SimpleQueue

__all__ = ("Empty", "Full", "JoinableQueue", "Queue", "SimpleQueue")
