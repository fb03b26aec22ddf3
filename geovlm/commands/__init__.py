"""Command groups beyond ``tile`` and ``classify``, one module each, registered in `geovlm.cli`."""
