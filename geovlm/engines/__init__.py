"""Where a run's model works: in this process (``local``) or on a Ray cluster's actors (``ray``).

An engine takes the driver's `geovlm.work_items.SceneWork` (scene paths and chip ids) and gives
back `geovlm.work_items.ProcessedBatch` records; the driver alone writes the output.
"""
