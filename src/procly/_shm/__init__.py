"""Shared memory (layer 2): named segments, ShareableList, shared ctypes, NumPy arrays.

Modules: :mod:`._segment` (SharedMemory), :mod:`._shareable_list`, :mod:`._ctypes`
(RawValue/RawArray/Value/Array over :mod:`._heap`), :mod:`._ndarray` (NumPy).  Imports
layers 0-1 only; the lock of a synchronized wrapper comes from the context passed in.
"""
