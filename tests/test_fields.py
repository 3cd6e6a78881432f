from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickloop.exceptions import InvalidRequest
from tickloop.fields import Selection

MARKET = {
    "symbol": "BTC-USD",
    "status": "open",
    "tick_size": "0.01",
    "book": {"seq": 3, "bids": [["1.00", "2.0"]], "asks": [["1.01", "1.0"]]},
}


def test_render_and_parse_round_trip() -> None:
    sel = Selection("symbol", "status", book=Selection("bids", "asks"))
    assert sel.render() == "symbol,status,book(bids,asks)"
    assert Selection.parse(sel.render()) == sel


def test_apply_nested() -> None:
    sel = Selection.parse("symbol,book(asks)")
    assert sel.apply([MARKET]) == [{"symbol": "BTC-USD", "book": {"asks": [["1.01", "1.0"]]}}]


def test_object_without_parentheses_is_whole() -> None:
    assert Selection("book").apply(MARKET) == {"book": MARKET["book"]}


@pytest.mark.parametrize(
    ("text", "field"),
    [("symbol,bogus", "bogus"), ("book(bogus)", "book.bogus"), ("symbol(x)", "symbol")],
)
def test_unknown_or_misused_field_is_named(text: str, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Selection.parse(text).apply(MARKET)
    assert info.value.field == field


@pytest.mark.parametrize("text", ["", ",", "a,", "a(b", "a()", "A", "a b", "a)(b"])
def test_malformed(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Selection.parse(text)
    assert info.value.field == "fields"


names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
selections = st.recursive(
    st.builds(lambda ns: Selection(*ns), st.lists(names, min_size=1, max_size=4)),
    lambda inner: st.builds(
        lambda ns, nested: Selection(*ns, **nested),
        st.lists(names, max_size=3),
        st.dictionaries(names, inner, min_size=1, max_size=3),
    ),
    max_leaves=10,
)


@given(selections)
def test_parse_inverts_render(sel: Selection) -> None:
    assert Selection.parse(sel.render()) == sel
