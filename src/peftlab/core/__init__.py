"""Helpers every part uses and that know nothing of the others: atomic file writes,
option dataclasses, the runtime (devices, dtypes, precision, allocator, seeds) and
module-tree helpers."""
