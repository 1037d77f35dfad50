"""Training: the supervised loop that trains a base model (``automc train``, ``model.train``
in an experiment)."""
