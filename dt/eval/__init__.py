"""Evaluation: batched episodes and single recorded rollouts (``evaluate``), the acting policy (``policy``),
target schedules (``steering``), the token layout and attention summaries (``tokens``), Spearman
(``calibration``), return alignment (``alignment``), settled-evaluation spread (``metrics``) and model cards
(``report``)."""
