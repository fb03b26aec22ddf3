"""What a run tells the outside and hears from it: JSON-lines events, progress, signals.

The engine never prints: it emits events and logs, and a bar, JSON lines or QGIS listens.
"""
