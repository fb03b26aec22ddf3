"""The responders' roll-up of a damage layer: counts per grade per area, a map, the run's limits.

`report.write_report` is the ``report`` command's engine; it reads the output layers
(`layers`, `provenance`), counts (`areas`, `tally`) and writes the page (`page`, `picture`)
beside its tables (`tables`).
"""
