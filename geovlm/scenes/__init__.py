"""Rasters in: open and check a scene, list an event's scenes (paths, folders, STAC), cut chips.

Nothing here knows about models or outputs; a scene is read window by window, never whole.
"""
