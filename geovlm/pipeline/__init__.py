"""The run: work items, the scenes of a run, the driver loop that alone writes, and engines.

Every per-chip task runs through `driver.run_over_chips`; `engines` run its steps here or on Ray.
"""
