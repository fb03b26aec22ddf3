"""Training sets: images plus LLaMA-Factory sharegpt records, built from xBD, maps or vectors."""

from geovlm.datasets.format import DatasetWriter, TrainingSet, read_dataset
from geovlm.datasets.samples import Sample, Split, Task
from geovlm.datasets.splits import SplitBy, SplitRule

__all__ = [
    "DatasetWriter",
    "Sample",
    "Split",
    "SplitBy",
    "SplitRule",
    "Task",
    "TrainingSet",
    "read_dataset",
]
