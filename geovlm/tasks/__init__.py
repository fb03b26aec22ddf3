"""Per-chip tasks: each turns batches of chips into records for a GeoPackage layer."""
