"""geovlm tests."""
