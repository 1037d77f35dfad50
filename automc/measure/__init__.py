"""Measurement: the evaluator (accuracy, loss, BN recalibration), the device-profile contract
and the timing loop measured profiles share."""
