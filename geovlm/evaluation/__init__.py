"""Measuring a model: score a labelled set, metrics, calibration fits, and the report folder.

`run` is the ``eval`` command's engine; `report_folder` writes its JSON, HTML and plots.
"""
