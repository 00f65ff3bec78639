"""Fuzzing the sample path of every model type and instance type (issue 17, item 1).

Each generated batch either trains (a finite loss) or raises a dlbatch.DLError whose message
names the broken sample's index and key (or the batch length / container), leaving
state_dict() and solver_state_dict() bit-identical; apply_dl_model on the same batch obeys
the same rule. Never another exception type, never a hang."""
from __future__ import annotations

import math
import re
from collections import Counter

import pytest
from hypothesis import given

import dlbatch
from dlbatch import DLError, DLNumericError

from .models import EXAMPLES, KINDS, RECT1_KEYS, RECT2_KEYS, assert_unchanged, case_timeout, fuzz_settings, \
    make_model, snapshot, valid_batch
from .strategies import Case, sample_cases

APPLY_KEYS = {"image", "original_image_size", None}  # what apply_dl_model validates (None: not a dict)
pytestmark = pytest.mark.slow  # about 10 s per model type on one core (2,000 cases)

BOX_KEYS = {*RECT1_KEYS, *RECT2_KEYS, "bbox_label_id", "boxes"}


def named(message: str, key) -> bool:
    """Whether the message names `key` (box keys count as one group: a degenerate box is
    reported under the coordinate that closes it)."""
    if key is None:  # the sample was replaced by a non-dict
        return "expected a dict" in message
    if key in BOX_KEYS:
        return any(k in message for k in BOX_KEYS - {"boxes"})
    return repr(key) in message


def check_message(case: Case, err: DLError, call: str) -> None:
    message = str(err)
    if isinstance(err, DLNumericError):
        return  # finite but extreme values: a numeric fault, not a sample error
    if case.container not in ("list", "tuple", "dict", "generator"):
        assert "samples must be" in message, f"{call}: container {case.container}: {message}"
        return
    if case.container == "generator":
        assert "samples must be" in message, f"{call}: {message}"
        return
    if case.container == "dict" and not isinstance(case.samples, dict):  # a junk value passed as the batch
        assert "samples must be" in message or re.match(r"sample \d+ is a", message), f"{call}: {message}"
        return
    if call == "train" and case.count_changed and "samples, but batch_size" in message:
        return
    found = re.search(r"\bsample (\d+)\b", message)
    assert found, f"{call}: the message names no sample index: {message}"
    index = int(found.group(1))
    assert index in case.mutated, f"{call}: sample {index} was valid, yet: {message}"
    assert any(named(message, k) for k in case.mutated[index]), \
        f"{call}: the message names none of {case.mutated[index]} of sample {index}: {message}"


def run_case(model, case: Case, stats: Counter) -> None:
    stats["cases"] += 1
    before = snapshot(model)
    trained = False
    with case_timeout():
        try:
            losses = dlbatch.train_dl_model_batch(model, case.samples)
        except DLError as err:
            stats[f"train refused: {type(err).__name__}"] += 1
            assert_unchanged(before, model, "a refused train_dl_model_batch")
            check_message(case, err, "train")
        else:
            stats["trained"] += 1
            trained = True
            assert all(math.isfinite(v) for v in losses.values()), losses
        touched = set().union(*case.mutated.values()) if case.mutated else set()
        if case.container == "generator" or not touched & APPLY_KEYS:
            return  # a spent generator; labels apply_dl_model does not read (train checked them)
        if trained:
            before = snapshot(model)
        try:
            results = dlbatch.apply_dl_model(model, case.samples)
        except DLError as err:
            stats["apply refused"] += 1
            check_message(case, err, "apply")
        else:
            stats["applied"] += 1
            assert len(results) == (1 if isinstance(case.samples, dict) else len(case.samples))
        assert_unchanged(before, model, "apply_dl_model")


@pytest.mark.parametrize("kind", KINDS)
def test_fuzzed_batches_train_or_raise_a_clear_error(kind):
    model = make_model(kind)
    model.train_batch(valid_batch(model, seed=1))  # a non-empty solver state to protect
    stats: Counter = Counter()

    @fuzz_settings()
    @given(case=sample_cases(kind, dict(model.hyperparameters)))
    def fuzz(case):
        run_case(model, case, stats)

    fuzz()
    print(f"\nsample fuzz {kind}: {dict(stats)}")  # shown with pytest -s
    assert stats["cases"] >= EXAMPLES, stats
    refused = sum(v for k, v in stats.items() if k.startswith("train refused"))
    # the strategies must reach both outcomes, or they test nothing
    assert stats["trained"] > 0 and refused > stats["trained"], stats
