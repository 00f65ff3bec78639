"""What a model type tells the train step: its loss terms, and per micro-batch the encoded
inputs and each term's target, weights and normaliser.

`ModelType.loss_terms` returns LossTerms and `ModelType.encode` an Encoded micro-batch; the
train step feeds each term's graph output and TermTarget to the term's `Loss` and divides the
summed loss by the normaliser. `dlbatch.core.model_type` re-exports these names.

Examples:
    >>> import numpy as np
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LossTerm", "TermTarget", "Encoded"]


@dataclass(frozen=True)
class LossTerm:
    """One term of the training objective (what `ModelType.loss_terms` returns).

    Attributes:
        name: the term's name, the key of its `TermTarget` in `Encoded.targets` and of the
            `losses` parameter.
        output: the graph output the term's loss reads.
        default_loss: the registered loss used unless the `losses` parameter says otherwise.
        weight_param: the hyperparameter that weights the term in `total_loss` (None:
            weight 1).

    Examples:
        What classification returns:

        >>> LossTerm("classification", output="logits", default_loss="multinomial_logistic")
        LossTerm(name='classification', output='logits', default_loss='multinomial_logistic', weight_param=None)
    """

    name: str
    output: str
    default_loss: str
    weight_param: str | None = None


@dataclass
class TermTarget:
    """What one loss term needs for one micro-batch (part of what `ModelType.encode` returns).

    The loss returns an unnormalised sum; the train step divides it by the normaliser, which
    the model type chooses: the sum of the weights for a weighted mean (multinomial
    logistic), max(1, number of positive anchors) for detection. Keeping the division out of
    the loss lets data-parallel training sum the count over every rank's shard before
    dividing.

    Attributes:
        target: goes to the loss as it is (numpy here, moved to the backend by the train step).
        weights: per-element weights, passed like `target`.
        normalizer: what the summed loss is divided by. A normaliser of 0 means nothing in the
            micro-batch counts for this term: its value is 0 and it sends no gradient.
        normalizer_floor: the divisor is max(normalizer_floor, normalizer summed over every
            rank's shard): a count such as positive anchors is given raw with floor 1, so
            data-parallel shards that hold no positives still sum to the single-process
            divisor.

    Examples:
        A weighted mean over three images whose class weights are 1, 1 and 2:

        >>> TermTarget(np.array([0, 2, 1]), np.array([1.0, 1.0, 2.0]), normalizer=4.0).normalizer_floor
        0.0
    """

    target: Any
    weights: Any
    normalizer: float
    normalizer_floor: float = 0.0


@dataclass
class Encoded:
    """A micro-batch ready for a backend (what `ModelType.encode` returns).

    Attributes:
        inputs: graph input name -> numpy array.
        targets: loss-term name -> its TermTarget (empty when encoded without labels).

    Examples:
        Two 4 x 4 grey images with their class indices, all weights 1:

        >>> encoded = Encoded({"image": np.zeros((2, 1, 4, 4), np.float32)},
        ...                   {"classification": TermTarget(np.array([1, 0]), np.ones(2), normalizer=2.0)})
        >>> encoded.inputs["image"].shape, encoded.targets["classification"].normalizer
        ((2, 1, 4, 4), 2.0)
    """

    inputs: dict[str, np.ndarray]
    targets: dict[str, TermTarget]
