"""Where work items come from besides the chip grid: objects (footprints) over a scene."""
