"""Value options: --set KEY=VALUE (JSON where it parses), --change / --augment (inline or @file),
--classes."""
import json

import pytest

from dlbatch.cli.options import (load_json_option, parse_assignments, parse_augment, parse_change, parse_classes,
                                 parse_value)
from dlbatch.core.errors import DLParamError


@pytest.mark.parametrize("text, value", [
    ("0.01", 0.01), ("3", 3), ("true", True), ("null", None), ("[1, 2]", [1, 2]), ('{"a": 1}', {"a": 1}),
    ("adam", "adam"), ('"0.5"', "0.5"), ("rc", "rc"), ("1e-3", 1e-3), ("", ""),
])
def test_values_are_json_where_they_parse_else_strings(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_assignments_split_at_the_first_equals_and_later_ones_win():
    got = parse_assignments(["learning_rate=0.1", "solver_type=adam", "learning_rate=0.5", "note=a=b",
                             " class_ids = [1, 2] "])
    assert got == {"learning_rate": 0.5, "solver_type": "adam", "note": "a=b", "class_ids": [1, 2]}


@pytest.mark.parametrize("item", ["learning_rate", "=3", ""])
def test_an_assignment_without_key_or_equals_is_a_clear_error(item):
    with pytest.raises(DLParamError, match="KEY=VALUE"):
        parse_assignments([item])


def test_json_options_inline_or_from_a_file(tmp_path):
    change = {"model_param": "learning_rate", "initial_value": 0.01, "epochs": [3], "values": [0.001]}
    path = tmp_path / "change.json"
    path.write_text(json.dumps([change]))
    assert parse_change(f"@{path}") == [change]
    assert parse_change(json.dumps(change)) == [change]  # one object: a list of one
    assert parse_change(None) is None and parse_augment(None) is None
    assert parse_augment('{"mirror": "rc"}') == {"mirror": "rc"}


def test_json_option_errors_name_the_option_and_where(tmp_path):
    with pytest.raises(DLParamError, match=r"--change: .*missing.json does not exist"):
        load_json_option(f"@{tmp_path / 'missing.json'}", "--change")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(DLParamError, match=r"--augment: .*bad.json JSON is not valid: .* line 2 column"):
        load_json_option(f"@{bad}", "--augment")
    with pytest.raises(DLParamError, match="--change must be a JSON object or a list"):
        parse_change("3")
    with pytest.raises(DLParamError, match="--augment must be a JSON object"):
        parse_augment("[1]")


def test_classes_with_and_without_names():
    assert parse_classes("1,2,5") == ([1, 2, 5], None)
    assert parse_classes("1:cat, 2:dog") == ([1, 2], ["cat", "dog"])
    assert parse_classes("3:x,4") == ([3, 4], ["x", "4"])
    for bad in ("a,b", "", ",", "1.5"):
        with pytest.raises(DLParamError, match="--classes"):
            parse_classes(bad)
