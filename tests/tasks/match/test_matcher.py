"""The matcher's prompts."""

from __future__ import annotations

from vidprop.tasks.match import (
    prompt_for,
)


def test_prompt_for_category():
    assert prompt_for("a photo of a {category}", "cat") == "a photo of a cat"
    assert prompt_for("a photo of a {category}", None) == ""
    assert prompt_for("", "cat") == ""
