"""Checkpoints: the schema (``meta``: written, checked and read in one place, torch-free), where they are on
disk (``listing``: ``list_checkpoints``, ``list_runs``, torch-free) and the store (``store``: save, load, resume
state, recovery; imports torch).

Import from the module you need (``from dt.checkpoint.meta import read_meta`` stays torch-free)."""
