"""The history layer: the model and every way the history is kept, below read and write.

:mod:`.model` holds the vocabulary (workers, ids, statuses, outcomes, states),
:mod:`.marks` the ``meta`` keys and hour/minute arithmetic of the tiers, and
:mod:`.intervals` the liveness model: each worker's expected beat interval and the one
rule that turns it into thresholds.
"""
