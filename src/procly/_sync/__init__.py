"""Synchronization primitives shared between processes (layer 2).

:mod:`._semlock` (named POSIX semaphores, Semaphore/BoundedSemaphore), :mod:`._lock`
(Lock/RLock with owner-death detection: it picks :mod:`._fastlock`, a futex word driven by
the C extension :mod:`procly._os._native`, or the pure :mod:`._purelock`; shared code in
:mod:`._lockbase`), :mod:`._condition`, :mod:`._event`, :mod:`._barrier`; :mod:`._owner`
and :mod:`._arena` hold the process identity and the shared words the primitives keep
their state in.  Public names live in :mod:`procly.synchronize`.
"""
