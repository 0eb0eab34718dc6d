"""The standard ``Pool`` API (layer 3b, over :mod:`procly._engine`)."""
