"""Fine-tuning on geovlm datasets: recipes, sequences, the trainer run and its outputs."""
