"""The one training loop for every method, with its step plan, session (model, data,
method), loss, checkpoints, evaluation and multi-process support."""
