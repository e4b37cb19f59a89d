"""Tools over the onboard runtime: the product rules as metrics (:mod:`.integrity`) and the scenario matrix that
flags the rows breaking them (:mod:`.matrix`, ``runtime matrix``).

Nothing is imported here: ``from runtime.tools.integrity import evaluate_integrity``.
"""
