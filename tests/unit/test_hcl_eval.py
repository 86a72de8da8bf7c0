"""tests/hcl_eval.py evaluates Terraform expressions the way Terraform does, or refuses them."""

from __future__ import annotations

import pytest
from hcl_eval import HclError, evaluate


def test_can_turns_an_error_into_false_and_a_value_into_true() -> None:
    assert evaluate('${can(regex("^[a-z]+$", var.x))}', {"var": {"x": "abc"}}) is True
    assert evaluate('${can(regex("^[a-z]+$", var.x))}', {"var": {"x": "ABC"}}) is False


def test_try_returns_the_first_argument_that_evaluates() -> None:
    assert evaluate("${try(var.x >= 1, var.x == null)}", {"var": {"x": None}}) is True
    assert evaluate("${try(var.x >= 1, var.x == null)}", {"var": {"x": 0}}) is False


def test_logical_operators_evaluate_both_operands_as_terraform_before_1_12_does() -> None:
    with pytest.raises(TypeError):
        evaluate("${var.x == null || var.x >= 1}", {"var": {"x": None}})


def test_a_function_outside_the_subset_is_refused_not_guessed() -> None:
    with pytest.raises(HclError, match="cidrhost"):
        evaluate('${cidrhost("10.0.0.0/8", 1)}', {})


def test_a_for_expression_groups_values_of_one_key_with_the_ellipsis() -> None:
    expression = '${{for k, v in var.m : "${v.kind}:x" => k...}}'
    value = evaluate(expression, {"var": {"m": {"a": {"kind": "p"}, "b": {"kind": "p"}, "c": {"kind": "q"}}}})
    assert value == {"p:x": ["a", "b"], "q:x": ["c"]}


def test_a_duplicate_key_without_the_ellipsis_is_an_error_as_in_terraform() -> None:
    with pytest.raises(HclError, match="duplicate key"):
        evaluate("${{for k, v in var.m : v => k}}", {"var": {"m": {"a": "same", "b": "same"}}})


def test_the_last_segment_of_a_path_and_a_conditional() -> None:
    path = {"var": {"p": "projects/p/locations/r/services/opus-ingest", "on": False}}
    assert evaluate('${element(reverse(split("/", var.p)), 0)}', path) == "opus-ingest"
    assert evaluate("${var.on ? 1 : 0}", path) == 0
