"""JSON from callers is parsed with a bound on nesting, without running out of stack."""

from __future__ import annotations

import pytest

from postroom.jsonlimits import MAX_DEPTH, JsonTooDeep, loads, too_deep


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_up_to_the_limit_parses() -> None:
    assert too_deep(loads(nested(MAX_DEPTH))) is False
    assert loads('{"a": {"b": [1, {"c": "d"}]}}') == {"a": {"b": [1, {"c": "d"}]}}
    assert loads(b"3") == 3


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 3_000, 100_000])
def test_deeper_nesting_is_refused_as_a_value_error(depth: int) -> None:
    with pytest.raises(JsonTooDeep) as exc:
        loads(nested(depth))
    assert isinstance(exc.value, ValueError)
    assert str(MAX_DEPTH) in str(exc.value)


def test_objects_count_as_levels() -> None:
    deep = '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
    with pytest.raises(JsonTooDeep):
        loads(deep)


def test_brackets_inside_strings_are_not_nesting() -> None:
    assert loads('["' + "[" * 5000 + '"]') == ["[" * 5000]


def test_not_json_is_a_plain_value_error() -> None:
    with pytest.raises(ValueError) as exc:
        loads(b"{not json")
    assert not isinstance(exc.value, JsonTooDeep)


def test_the_web_forms_json_fields_refuse_deep_nesting_as_a_field_error() -> None:
    from postroom.errors import ValidationError
    from postroom.web.template_form import parse_json_object

    with pytest.raises(ValidationError) as exc:
        parse_json_object('{"a":' + nested(3_000) + "}", "sample_data")
    assert exc.value.field == "sample_data" and "levels" in exc.value.message
