"""Unit: process-wide settings (lumos.core.config): sizes, the memory budget and the progress default."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lumos
from lumos.core import config
from lumos.core.config import DEFAULT_MEMORY_BUDGET, parse_bytes


@pytest.mark.parametrize(("text", "expected"), [
    ("2147483648", 2147483648),
    ("512MB", 512 * 1024**2),
    ("512mb", 512 * 1024**2),
    ("2 GB", 2 * 1024**3),
    (" 1.5KB ", 1536),
    ("3K", 3072),
    ("1G", 1024**3),
    ("0.5TB", 1024**4 // 2),
    ("100B", 100),
    (".5MB", 512 * 1024),
])
def test_parse_bytes_strings(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_parse_bytes_numbers() -> None:
    assert parse_bytes(1024) == 1024
    assert parse_bytes(1e6) == 1_000_000
    assert parse_bytes(10.9) == 10


@pytest.mark.parametrize("bad", [0, -1, -5.0, "0MB", "", "abc", "12 XB", "1e9", "-3GB", "MB", True, None, [1]])
def test_parse_bytes_rejects(bad) -> None:
    with pytest.raises(lumos.ValidationError, match="memory budget") as info:
        parse_bytes(bad, owner="Owner")
    assert str(info.value).startswith("Owner: ")


POWERS = {"": 0, "B": 0, "KB": 1, "MB": 2, "GB": 3, "TB": 4, "K": 1, "M": 2, "G": 3, "T": 4}


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(sorted(POWERS)))
def test_parse_bytes_units_are_powers_of_1024(number: int, unit: str) -> None:
    power = POWERS[unit]
    assert parse_bytes(f"{number}{unit}") == number * 1024**power
    assert parse_bytes(f"{number} {unit.lower()}") == number * 1024**power


def test_memory_budget_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.memory_budget() == DEFAULT_MEMORY_BUDGET == 2 * 1024**3
    monkeypatch.setenv("LUMOS_MEMORY_BUDGET", "64MB")
    assert lumos.config.memory_budget() == 64 * 1024**2  # the env var
    lumos.config.set_memory_budget("1GB")
    assert lumos.config.memory_budget() == 1024**3  # code wins over the env var
    lumos.config.set_memory_budget(None)
    assert lumos.config.memory_budget() == 64 * 1024**2  # back to the env var
    monkeypatch.setenv("LUMOS_MEMORY_BUDGET", "")
    assert lumos.config.memory_budget() == DEFAULT_MEMORY_BUDGET  # empty = unset


def test_bad_memory_budget_env_var_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMOS_MEMORY_BUDGET", "lots")
    with pytest.raises(lumos.ValidationError, match="LUMOS_MEMORY_BUDGET.*'lots'"):
        lumos.config.memory_budget()


def test_set_memory_budget_validates() -> None:
    with pytest.raises(lumos.ValidationError, match="set_memory_budget"):
        lumos.config.set_memory_budget("-1GB")
    assert lumos.config.memory_budget() == DEFAULT_MEMORY_BUDGET  # unchanged by the failed call


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("off", False), ("FALSE", False), ("1", True),
                                                 ("yes", True), ("", None), ("maybe", None)])
def test_progress_default(monkeypatch: pytest.MonkeyPatch, value: str, expected) -> None:
    monkeypatch.setenv("LUMOS_PROGRESS", value)
    assert config.progress_default() is expected


def test_progress_bar_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from lumos.core.progress import progress_bar

    monkeypatch.setenv("LUMOS_PROGRESS", "0")
    assert progress_bar(5, desc="x", progress=None).disable
    assert not progress_bar(5, desc="x", progress=True).disable  # the argument wins over the env var
    monkeypatch.setenv("LUMOS_PROGRESS", "")
    assert progress_bar(1, desc="x", progress=None).disable  # a single step never shows a bar
    assert progress_bar(5, desc="x", progress=False).disable
