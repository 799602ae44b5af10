"""Training: the trainer (``trainer``), its saved and resumed state (``state``), data-parallel helpers
(``distributed``), the torchrun wrapper (``launch``: ``python -m dt.train.launch``), the run folder and its lock
(``rundir``) and FLOP counts (``flops``)."""
