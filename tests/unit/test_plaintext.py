"""HTML → plain text (pure): in linear time on hostile HTML, and still reading HTML right."""

from __future__ import annotations

import pytest

from postroom.notify.plaintext import html_to_text
from tests.timebound import cpu_seconds

N = 100_000
# each took seconds in html.parser (quadratic): 60 KB of '<a b=\'' took 7 s
HOSTILE = {
    "brackets": "<",
    "unclosed tags": "<a",
    "unclosed quoted attributes": "<a b='",
    "end tags without names": "</",
    "processing instructions": "<?",
    "nested links": "<a href=x>y",
    "nested headings": "<h1>x",
    "closing headings": "</h1>",
    "nested tables": "<table><tr><td>x",
    "wide rows then many rows": "<td>x",
    "nested lists": "<ul><li>x",
    "numeric references": "&#1",
    "equals signs": "<a ==",
}


@pytest.mark.parametrize("unit", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_html_converts_in_linear_time(unit: str) -> None:
    value = (unit * (N // len(unit) + 1))[:N]
    cpu_seconds(html_to_text, value, bound=1.5)


def test_a_wide_table_is_not_padded_into_a_square() -> None:
    """One row of 5,000 cells and 5,000 rows of one cell: padding every row to the widest
    would build 25 million cells."""
    html = "<table><tr>" + "<td>x" * 5000 + "<tr><td>y" * 5000 + "</table>"
    cpu_seconds(html_to_text, html, bound=1.5)
    assert html_to_text(html).count("y") == 5000


def test_tags_attributes_comments_and_references() -> None:
    html = (
        "<!DOCTYPE html><html><head><title>T</title><style>p{x:'<b>'}</style></head>"
        "<body><!-- a <p>comment</p> --><P CLASS=x>a &amp; b &lt;c&gt; &#233;&eacute;</P>"
        "<p>Go <a HREF='https://e.test/?a=1&amp;b=2' title=\"x > y\">there</a></p>"
        "<script>if (a<b) document.write('</p>')</script>"
        "<p>1 < 2 and 3<4</p><br/>x<?php echo 1 ?>y</></p>&#99999999999; z"
    )
    assert html_to_text(html) == (
        "a & b <c> éé\n\nGo there (https://e.test/?a=1&b=2)\n\n1 < 2 and 3<4\n\nxy\n\n\ufffd z\n"
    )


def test_a_document_ending_inside_a_tag_drops_the_tag() -> None:
    assert html_to_text("<p>kept</p><a href='never closed>lost") == "kept\n"


def test_headings_underline_their_own_text() -> None:
    assert html_to_text("<p>intro</p><h1>Title</h1><h2>Sub <b>part</b></h2>") == (
        "intro\n\nTitle\n=====\n\nSub part\n--------\n"
    )
