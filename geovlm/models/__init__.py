"""Which weights a name means and whether they can load: presets, files, the hub, quantization.

Nothing here imports torch, and only `hub` may touch the network (a short probe).
"""
