"""Decision Transformer playground: data, model, trainer, evaluation, rendering."""

__version__ = "0.1.0"
