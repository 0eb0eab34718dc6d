"""The worker-pool engine under both :class:`procly.Pool` and :class:`procly.ProcessPoolExecutor`.

One engine, so both APIs have the same crash, timeout and cancellation semantics.  Where
things are:

* :mod:`._dispatcher` -- the :class:`~._dispatcher.Engine` and its dispatcher thread (the
  data-flow diagram and the actors are drawn there); :mod:`._recovery` -- what happens
  when a worker dies or is killed, and how an engine ends;
* :mod:`._supervisor` -- who holds which task, per-task deadlines, crash attribution (pure
  logic, unit-tested with a fake launcher and clock); :mod:`._launcher` -- workers as procly
  processes of the pool's context;
* :mod:`._worker` -- the worker process's loop; :mod:`._messages` -- the wire types;
  :mod:`._channel` -- per-worker socketpair framing, with out-of-band buffers (NumPy
  arrays) sent by scatter-gather, and big ones copied once into memfd segments whose
  descriptors travel with the frame (:mod:`._bigbuf`: received without a copy, reused
  once released, nothing to leak);
* :mod:`._remote_tb` -- exceptions cross back as their own type with the remote traceback;
* :mod:`._lazy` and :mod:`._chunking` -- lazy maps with backpressure and adaptive chunks;
* :mod:`._tasks`, :mod:`._options`, :mod:`._waiter` -- task records and the sink protocol,
  validated options, waiting for results.

Layer 3: imports layers 0-2 only.  Workers are started through a
:class:`._supervisor.Launcher`, and Pool/Executor see the engine through the narrow
:class:`._tasks.EngineLike` interface (submit a batch, outcomes through sinks, cancel,
close, terminate): the seams a cluster backend would implement.
"""
