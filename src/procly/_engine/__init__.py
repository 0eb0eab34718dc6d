"""The worker-pool engine under both :class:`procly.Pool` and :class:`procly.ProcessPoolExecutor`.

One engine, so both APIs have the same crash, timeout and cancellation semantics.  The data
flow and the actors are drawn in :mod:`._dispatcher`; the wire types are in
:mod:`._messages`; the worker loop in :mod:`._worker`; deadlines and crash attribution in
:mod:`._supervisor`; exception transport in :mod:`._remote_tb`; chunk-size policy in
:mod:`._chunking`.

Layer 3: imports layers 0-2 only.  Workers are started through a :class:`._supervisor.Launcher`
(the local one, :class:`._launcher.ProcessLauncher`, uses a procly context's ``Process``),
which is the seam a cluster backend would replace.
"""
