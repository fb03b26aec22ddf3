"""Grade probabilities of building-damage samples from a trained folder, by the training forward.

A stand-in for ``geovlm eval`` on two-image prompts until the backends score several images:
each held-out sample's four grade answers are built as training sequences
(`geovlm.training.data.SequenceBuilder`, so prompt, images and answer tokens are exactly what
training saw), run through the model in one batch, and scored by the sum of their answer
tokens' log-likelihoods, softmaxed over the four grades.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geovlm.datasets import TrainingSet
from geovlm.labels.building_damage import GRADES, grade_answer
from geovlm.training.data import IGNORE_INDEX, Collator, SequenceBuilder

__all__ = ["grade_probabilities"]


def grade_probabilities(model_dir: Path, data: TrainingSet, image_max_pixels: int = 4096,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Return (n, 4) grade probabilities of ``data``'s test samples and their true grade indices.

    Parameters
    ----------
    model_dir
        A ``geovlm train`` output folder of a full fine-tuning (weights and processor).
    data
        The building-damage set whose test split is scored.
    image_max_pixels
        The recipe's pixel cap per image.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    builder = SequenceBuilder.for_processor(processor, "qwen3_vl_nothink", image_max_pixels, 512)
    collate = Collator(builder.pad_id)
    scores, truth = [], []
    for sample in data.test:
        images = [Image.open(path).convert("RGB") for path in data.image_paths(sample)]
        batch = collate([builder.build(sample.question, grade_answer(grade, sample.language),
                                       images) for grade in GRADES])
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        labels = batch["labels"][:, 1:]
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        mask = labels != IGNORE_INDEX
        picked = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        scores.append((picked * mask).sum(dim=1).tolist())
        truth.append([grade.value for grade in GRADES].index(sample.label))
    totals = torch.tensor(scores)
    return torch.softmax(totals, dim=1).numpy(), np.array(truth)
