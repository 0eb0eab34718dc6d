"""``ProcessPoolExecutor`` (layer 3b, over :mod:`procly._engine`)."""
