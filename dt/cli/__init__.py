"""The command line: ``python -m dt`` (``commands``: train, evaluate, card, results, bench; ``data``: the dataset
commands) on typed argument dataclasses (``flags``: ``opt``, ``flag``, ``add_command``). ``--help`` never imports
torch."""
