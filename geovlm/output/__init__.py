"""Sinks: the GeoPackage writer, the ``runs`` ledger, the one-writer lock and stored QGIS styles.

Everything that makes an output resumable after ``kill -9`` and valid for GDAL's validator;
and the HTML tables of the report pages.
"""
