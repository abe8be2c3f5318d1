"""Instruction data: sources (bundled, local file, Hub) and the Alpaca pipeline."""
