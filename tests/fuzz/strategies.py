"""Hypothesis strategies that break a valid sample batch: wrong types, shapes and dtypes,
NaN/inf, empty arrays, huge values, unknown and missing keys, boxes outside the image or
with zero area, label images with unknown ids, wrong batch lengths and containers.

Arrays are drawn as a small recipe (dtype, shape, fill, seed) and built with numpy, which
keeps generation fast and lets hypothesis shrink a failure to a readable recipe."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from hypothesis import strategies as st

from .models import label_keys, valid_sample

DTYPES = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint64", "bool",
          "complex64", "U3", "O", "datetime64[s]")
POISONS = ("none", "nan", "inf", "-inf", "huge", "-huge", "max", "fraction", "negative", "unknown_id",
           "big_int")
SPECIAL_FLOATS = (float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -0.5, 1e-300, -1e-9, 1e9, -1e9,
                  1e300, 3.5e38, 2.0 ** 63, -(2.0 ** 63))
UNKNOWN_KEYS = ("foo", "", "image_label", "bbox_label", "segmentation", "original_image_size", "IMAGE", 3)


@dataclass(repr=False)
class Case:
    """A batch to train on and what was done to it (for the message checks)."""

    samples: Any
    count_changed: bool = False
    container: str = "list"
    mutated: dict[int, set] = field(default_factory=dict)  # sample index -> keys touched

    def __repr__(self) -> str:
        samples = self.samples
        if isinstance(samples, (list, tuple)):
            samples = [{k: describe(v) for k, v in s.items()} if isinstance(s, dict) else describe(s)
                       for s in samples]
        return f"Case(container={self.container}, mutated={self.mutated}, samples={samples!r})"

    def _repr_pretty_(self, printer, cycle) -> None:  # hypothesis prints failing cases with this
        printer.text(repr(self))

    def touch(self, index: int, key) -> None:
        self.mutated.setdefault(index, set()).add(key)


def describe(value) -> str:
    """A short text for a failure report: arrays by dtype, shape and a few values."""
    if isinstance(value, np.ndarray) and value.size > 6:
        return f"array({value.dtype}, {value.shape}, first {value.reshape(-1)[:6].tolist()})"
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


def build_array(dtype: str, shape: tuple, poison: str, seed: int, ids=(0, 1)) -> np.ndarray:
    """A numpy array of `dtype` and `shape`: random values with one kind of poison."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(shape) * 40 if shape else np.asarray(rng.standard_normal() * 40)
    if poison == "unknown_id" or dtype.startswith(("int", "uint")):
        base = rng.choice(np.asarray(list(ids) + [max(ids) + 1, -1], dtype=np.float64), shape)
    flat = base.reshape(-1)
    if flat.size and poison != "none":
        where = rng.integers(0, flat.size, max(1, flat.size // 7))
        flat[where] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e300, "-huge": -1e300,
                       "max": 3.4e38, "fraction": 0.5, "negative": -3.0, "unknown_id": max(ids) + 17,
                       "big_int": 2.0 ** 64}.get(poison, 0.0)
    if dtype == "O":
        out = np.empty(shape, dtype=object)
        for i, v in enumerate(flat):
            out.reshape(-1)[i] = [None, "x", int(v) if np.isfinite(v) else v, [1, 2]][i % 4]
        return out
    if dtype == "U3":
        return base.astype("U3")
    if dtype.startswith("datetime"):
        return np.zeros(shape, dtype)
    with np.errstate(all="ignore"):
        return base.astype(dtype)


@st.composite
def arrays(draw, shape: tuple, ids=(0, 1)) -> np.ndarray:
    """An array near `shape` (the right one, swapped, squeezed, extra or empty dimensions)."""
    shapes = [shape, shape[:2], shape[::-1], (*shape, 1), (1, *shape), (0,), (), (shape[0],),
              (shape[0] + 1, *shape[1:]), (*shape[:-1], 0), (0, *shape[1:]), (2, 2)]
    return build_array(draw(st.sampled_from(DTYPES)), draw(st.sampled_from(shapes)),
                       draw(st.sampled_from(POISONS)), draw(st.integers(0, 2 ** 16)), ids)


def _junk() -> st.SearchStrategy:
    """Values of the wrong kind altogether."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(),
                        st.text(max_size=4), st.binary(max_size=4), st.sampled_from(SPECIAL_FLOATS))
    return st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=3), scalars, max_size=2),
                     st.just([[1.0], [1.0, 2.0]]), st.just({1, 2}), st.just(object()), st.just(np.float64("nan")),
                     st.just(np.int64(2 ** 62)), st.just(np.uint64(2 ** 64 - 1)), st.just(np.array(1.5)),
                     st.just(np.array([], dtype=np.float64)), st.just(np.ma.masked_array([1.0, 2.0], [0, 1])))


JUNK = _junk()
NOT_A_DICT = JUNK.filter(lambda v: not isinstance(v, dict))


def junk() -> st.SearchStrategy:
    return JUNK


def image_values(hp: Mapping[str, Any]) -> st.SearchStrategy:
    h, w, c = hp["image_height"], hp["image_width"], hp["image_num_channels"]
    return st.one_of(arrays((h, w, c)), arrays((h, w, c)), junk())


def label_id_values(ids) -> st.SearchStrategy:
    odd = (1.0 * ids[0], ids[0] + 0.5, max(ids) + 1, -1, 2 ** 63, 2 ** 70, float("nan"), float("inf"), str(ids[0]),
           [ids[0]], np.array(ids[:1]), np.array(ids * 2), np.int64(ids[-1]), np.uint64(2 ** 64 - 1), True)
    return st.one_of(st.sampled_from(list(ids)), st.sampled_from(odd), junk())


def label_image_values(hp: Mapping[str, Any], weights: bool) -> st.SearchStrategy:
    h, w = hp["image_height"], hp["image_width"]
    ids = tuple(hp["class_ids"])
    near = arrays((h, w), ids) if not weights else arrays((h, w))
    return st.one_of(near, near, arrays((h, w, 1), ids), junk())


def box_column_values(kind: str, key: str, hp: Mapping[str, Any], n: int, ids) -> st.SearchStrategy:
    """One box key's values: a valid column with one entry spoiled, a column of another
    length, a 2-D or non-numeric column, or junk."""
    h, w = hp["image_height"], hp["image_width"]
    edges = (-0.5, -0.6, h - 0.5, h - 0.4, w, 0.0, 1.0, 2 * h, -h)

    @st.composite
    def spoiled(draw):
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
        m = max(n, 1)
        col = valid_sample(kind, hp, rng)[key] if n else np.asarray([], dtype=np.float64)
        col = np.resize(np.asarray(col), m).astype(np.float64 if key != "bbox_label_id" else np.int64)
        value = draw(st.sampled_from(SPECIAL_FLOATS + edges)) if key != "bbox_label_id" else \
            draw(st.sampled_from((max(ids) + 1, -1, ids[0], 2 ** 62)))
        if key == "bbox_label_id":
            col[draw(st.integers(0, m - 1))] = value
        else:
            col = col.astype(np.float64)
            col[draw(st.integers(0, m - 1))] = value
        return col

    other_length = st.builds(lambda k: np.zeros(k), st.integers(0, 5))
    return st.one_of(spoiled(), spoiled(), other_length, arrays((max(n, 1),), ids), junk())


def key_values(kind: str, key, hp: Mapping[str, Any], n_boxes: int) -> st.SearchStrategy:
    ids = list(hp["class_ids"])
    if key == "image":
        return image_values(hp)
    if key == "image_label_id":
        return label_id_values(ids)
    if key in ("segmentation_image", "weight_image"):
        return label_image_values(hp, key == "weight_image")
    if isinstance(key, str) and key.startswith("bbox_"):
        return box_column_values(kind, key, hp, n_boxes, ids)
    return st.one_of(junk(), arrays((2,)))


def _box_count(sample: dict) -> int:
    """How many boxes the sample's label key holds (0 when it was spoilt already)."""
    value = sample.get("bbox_label_id")
    return len(value) if isinstance(value, np.ndarray) and value.ndim == 1 else 0


def _zero_area(sample: dict, kind: str, box: int) -> None:
    """Make box `box` of the sample degenerate: zero height/width or zero length."""
    pairs = {"rectangle1": (("bbox_row2", "bbox_row1"), ("bbox_col2", "bbox_col1"))}
    if kind == "rectangle1":
        hi, lo = pairs[kind][box % 2]
        sample[hi] = np.array(sample[hi], dtype=np.float64)
        sample[hi][box] = sample[lo][box]
    else:
        key = ("bbox_length1", "bbox_length2")[box % 2]
        sample[key] = np.array(sample[key], dtype=np.float64)
        sample[key][box] = 0.0


def sample_cases(kind: str, hp: Mapping[str, Any]) -> st.SearchStrategy:
    """A valid batch for the model, then 0-3 mutations, a changed length or container. The
    value strategies are built once here (building them per draw is slow)."""
    keys = ["image", *label_keys(kind), *UNKNOWN_KEYS]
    values = Quiet({(key, n): key_values(kind, key, hp, n) for key in keys for n in range(4)})
    return _sample_cases(kind, Quiet(hp), values)


class Quiet(dict):
    """A dict that prints short, so a failure report shows the case, not the strategies."""

    def __repr__(self) -> str:
        return f"<{len(self)} entries>"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


@st.composite
def _sample_cases(draw, kind: str, hp: Mapping[str, Any], values) -> Case:
    n = hp["batch_size"] * hp["batch_size_multiplier"]
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    samples = [valid_sample(kind, hp, rng) for _ in range(n)]
    case = Case(samples)
    detection = kind.startswith("rectangle")
    keys = ["image", *label_keys(kind)]
    for _ in range(draw(st.sampled_from((0, 1, 1, 1, 2, 2, 3)))):
        i = draw(st.integers(0, n - 1))
        s = samples[i]
        op = draw(st.sampled_from(("set", "set", "set", "delete", "unknown_key", "not_a_dict", "zero_area")))
        if op == "not_a_dict":
            samples[i] = draw(NOT_A_DICT)
            case.touch(i, None)
            continue
        if not isinstance(s, dict):
            continue
        if op == "unknown_key":
            key = draw(st.sampled_from(UNKNOWN_KEYS))
            s[key] = draw(values[key, 0])
            case.touch(i, key)
        elif op == "delete":
            key = draw(st.sampled_from(keys))
            s.pop(key, None)
            case.touch(i, key)
        elif op == "zero_area" and detection:
            boxes = _box_count(s)
            if boxes and all(isinstance(s.get(k), np.ndarray) and s[k].ndim == 1 and len(s[k]) == boxes for k in label_keys(kind)):
                _zero_area(s, kind, draw(st.integers(0, boxes - 1)))
                case.touch(i, "boxes")
        else:
            key = draw(st.sampled_from(keys))
            n_boxes = _box_count(s) if detection else 0
            s[key] = draw(values[key, min(n_boxes, 3)])
            case.touch(i, key)
    change = draw(st.sampled_from(("none",) * 8 + ("drop", "add", "empty", "container")))
    if change == "drop":
        d = draw(st.integers(0, n - 1))
        del samples[d]
        case.mutated = {i - (i > d): k for i, k in case.mutated.items() if i != d}
        case.count_changed = True
    elif change == "add":
        samples.append(valid_sample(kind, hp, rng))
        case.count_changed = True
    elif change == "empty":
        samples.clear()
        case.count_changed = True
    elif change == "container":
        case.container = draw(st.sampled_from(("tuple", "dict", "str", "none", "int", "generator", "set", "array")))
        case.samples = {"tuple": tuple, "dict": lambda s: s[0] if s else {}, "str": lambda s: "samples",
                        "none": lambda s: None, "int": lambda s: 7, "generator": lambda s: (x for x in s),
                        "set": lambda s: {1, 2}, "array": lambda s: np.zeros((n, 2))}[case.container](samples)
        if case.container == "dict":
            case.count_changed = n != 1
            case.mutated = {0: case.mutated.get(0, set())} if 0 in case.mutated else {}
    return case
