"""What is asked and what counts as an answer: labels, questions, answer forms, calibration.

Pure vocabulary and arithmetic on probabilities: no model, no raster, no torch.
"""
