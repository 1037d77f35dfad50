"""Training: the supervised loop that trains a base model (``automc train``, ``model.train``
in an experiment), and the recovery loop — distillation, training under compression — that
fine-tunes finalists and trains architecture candidates on a proxy task."""
