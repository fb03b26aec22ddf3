"""Objects in: building footprints from any GDAL vector layer or an xBD label, placed on scenes.

Also reads xBD folders (tiles, buildings, damage grades) and fits their missing georeferencing.
"""
