"""Unified social credit codes, GB 32100-2015."""

from __future__ import annotations

import pytest

from ledger.errors import ValidationError
from ledger.uscc import check_uscc, make_uscc


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000600037341L", "91310000132149237G"])
def test_real_codes_with_their_check_character_are_accepted(code: str) -> None:
    assert check_uscc(code) == code


@pytest.mark.parametrize(
    "code",
    [
        "91350100M000100Y44",  # wrong check character
        "91350100M000100Y4",  # 17 characters
        "91350100M000100Y433",  # 19 characters
        "9135010OM000100Y43",  # letter O is not in the alphabet
        "91AB0100M000100Y43",  # division code not digits
        "",
        None,
        91350100,
    ],
)
def test_malformed_codes_are_refused(code: object) -> None:
    with pytest.raises(ValidationError):
        check_uscc(code)


def test_make_uscc_completes_a_code_that_then_validates() -> None:
    assert check_uscc(make_uscc("91371500MA3C00001"))
