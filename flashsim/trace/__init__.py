"""Activation traces: the versioned file format, capture from the sparse OPT, statistics."""
