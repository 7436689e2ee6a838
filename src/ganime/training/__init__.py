"""Training: the loop, device/precision choices, the run's reports."""
