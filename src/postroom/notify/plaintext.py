"""Plain text from an HTML mail body (pure), for templates that give no text part.

Mail clients that show text, screen readers and spam filters all read the text part,
so it must carry the same content as the HTML: paragraphs stay paragraphs, links keep
their address (``text (url)``), list items get a marker, and data tables become
aligned columns. Layout tables (one column, or cells holding whole paragraphs, as
mail layouts use them) flow as plain blocks instead.

The HTML may be hostile (a ``sender`` key's message body), so the conversion takes time
linear in its length. Python 3.11's ``html.parser`` does not: 60 KB of ``<a`` took 1.8 s
and 60 KB of ``<a b='`` 7 s, doubling the input quadrupling the time. Tags are therefore
read by the small tokenizer below (HTML5's rules, simplified: every step moves forward, a
construct left open at the end swallows the rest), and every look back into the output
is bounded in depth.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import unescape

__all__ = ["html_to_text"]

_SKIP = frozenset({"head", "style", "script", "title", "template", "noscript"})
_BLOCK = frozenset(
    {"p", "div", "section", "article", "header", "footer", "main", "nav", "aside",
     "blockquote", "address", "figure", "figcaption", "dl", "dt", "dd", "form", "fieldset"}
)  # fmt: skip
_HEADINGS = {"h1": "=", "h2": "-", "h3": "", "h4": "", "h5": "", "h6": ""}
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_MANY_BREAKS = re.compile(r"\n{3,}")
_TABLE_WIDTH = 100  # wider tables fall back to "a | b" rows, which wrap better
# spaces inside <pre> survive the tidying that strips indentation left over from markup
_PRE_SPACE = "\ue000"
#: nesting beyond this (links, headings, tables) is read as plain text: each level looks
#: back into the output once, so unbounded nesting would cost time squared
_MAX_NESTING = 16

_SPACE_CHARS = "\t\n\f\r "
_NAME = re.compile(r"[^\t\n\f\r />]*")  # a tag name after its first letter
_ATTR_NAME = re.compile(r"[^\t\n\f\r />=]*")  # an attribute name after its first char
_WHITESPACE = re.compile(r"[\t\n\f\r ]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_RAW_END = {
    tag: re.compile(rf"</{tag}(?=[\t\n\f\r />])", re.IGNORECASE) for tag in ("script", "style")
}
# beyond U+10FFFF either way, and html.unescape raises on more than 4,300 digits
_HUGE_CHARREF = re.compile(r"&#(?:[xX]0*[1-9a-fA-F][0-9a-fA-F]{6,}|0*[1-9][0-9]{7,});?")

_Token = tuple[str, str, list[tuple[str, str | None]]]  # kind, tag name or text, attributes


def _unescape(text: str) -> str:
    if "&" not in text:
        return text
    return unescape(_HUGE_CHARREF.sub("\ufffd", text))


def _past(run: re.Pattern[str], source: str, at: int) -> int:
    """Where the run of ``run``'s characters starting at ``at`` ends (it may be empty)."""
    found = run.match(source, at)
    return found.end() if found else at


def _tag(source: str, at: int) -> tuple[str, list[tuple[str, str | None]], bool, int] | None:
    """The tag whose name starts at ``at`` (just after ``<`` or ``</``): its lower-case
    name, attributes, whether it closes itself, and where it ends; None when the document
    ends inside it (HTML5 then drops it)."""
    end = _past(_NAME, source, at + 1)
    name = source[at:end].lower()
    attrs: list[tuple[str, str | None]] = []
    i, n = end, len(source)
    while True:
        i = _past(_WHITESPACE, source, i)
        if i >= n:
            return None
        c = source[i]
        if c == ">":
            return name, attrs, False, i + 1
        if c == "/":
            if source.startswith("/>", i):
                return name, attrs, True, i + 2
            i += 1
            continue
        stop = _past(_ATTR_NAME, source, i + 1)
        key, i = source[i:stop].lower(), _past(_WHITESPACE, source, stop)
        if not source.startswith("=", i):
            attrs.append((key, None))
            continue
        i = _past(_WHITESPACE, source, i + 1)
        if i >= n:
            return None
        if source[i] in "\"'":
            close = source.find(source[i], i + 1)
            if close < 0:
                return None
            value, i = source[i + 1 : close], close + 1
        else:
            stop = _past(_UNQUOTED, source, i)
            value, i = source[i:stop], stop
        attrs.append((key, _unescape(value)))


def _tokens(source: str) -> Iterator[_Token]:
    """``("data", text, [])``, ``("start", tag, attrs)``, ``("startend", tag, attrs)`` and
    ``("end", tag, [])`` for ``source``, in one forward pass."""
    text_from, i, n = 0, 0, len(source)
    while True:
        lt = source.find("<", i)
        if lt < 0:
            if text_from < n:
                yield "data", _unescape(source[text_from:]), []
            return
        nxt, after = source[lt + 1 : lt + 2], source[lt + 2 : lt + 3]
        if nxt.isascii() and nxt.isalpha():
            kind, tag = "start", _tag(source, lt + 1)
        elif nxt == "/" and after.isascii() and after.isalpha():
            kind, tag = "end", _tag(source, lt + 2)
        elif nxt in ("!", "?", "/"):  # a comment, or something HTML5 reads as one
            kind, tag = "comment", None
        else:  # a "<" that opens nothing is text
            i = lt + 1
            continue
        if lt > text_from:
            yield "data", _unescape(source[text_from:lt]), []
        if kind == "comment":
            opener, closer = ("<!--", "-->") if source.startswith("<!--", lt) else ("<", ">")
            close = source.find(closer, lt + len(opener))
            i = n if close < 0 else close + len(closer)
        elif tag is None:  # the document ends inside the tag: HTML5 drops it
            return
        else:
            name, attrs, closed, i = tag
            if kind == "end":
                yield "end", name, []
            else:
                yield ("startend" if closed else "start"), name, attrs
                if name in _RAW_END and not closed:  # script and style hold text, not tags
                    end = _RAW_END[name].search(source, i)
                    if end is not None and end.start() > i:
                        yield "data", source[i : end.start()], []
                    i = end.start() if end else n
        text_from = i


@dataclass
class _Table:
    rows: list[list[str]] = field(default_factory=list)
    #: per row, whether each cell is a <th>: a row of only <th> is a header row
    kinds: list[list[bool]] = field(default_factory=list)
    cell_open: bool = False


class _Converter:
    def __init__(self) -> None:
        # one buffer per open table cell, so a cell's text can be laid out as a column
        self.buffers: list[list[str]] = [[]]
        self.skip = 0
        self.pre = 0
        self.links: list[tuple[str | None, int]] = []
        self.lists: list[list[int] | None] = []  # a counter for <ol>, None for <ul>
        self.tables: list[_Table] = []
        # an element hidden with display:none (a mail preheader) and its nesting depth
        self.hidden: tuple[str, int] | None = None
        # each open heading: the buffer it writes to, and where its text starts there
        self.headings: list[tuple[list[str], int]] = []

    def feed(self, source: str) -> None:
        for kind, value, attrs in _tokens(source):
            if kind == "data":
                self.handle_data(value)
            elif kind == "end":
                self.handle_endtag(value)
            else:
                self.handle_starttag(value, attrs)

    # -- output helpers ---------------------------------------------------------------------

    @property
    def out(self) -> list[str]:
        return self.buffers[-1]

    def block(self, breaks: str = "\n\n") -> None:
        self.out.append(breaks)

    # -- parser callbacks -------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.hidden is not None:
            if tag == self.hidden[0]:
                self.hidden = (tag, self.hidden[1] + 1)
            return
        if tag in _SKIP:
            self.skip += 1
            return
        if self.skip:
            return
        attr = dict(attrs)
        if tag not in _VOID and "display:none" in (attr.get("style") or "").replace(" ", ""):
            self.hidden = (tag, 1)
            return
        if tag in _BLOCK or tag in _HEADINGS:
            self.block()
            if tag in _HEADINGS and len(self.headings) < _MAX_NESTING:
                self.headings.append((self.out, len(self.out)))
        elif tag == "br":
            self.out.append("\n")
        elif tag == "hr":
            self.block()
            self.out.append("-" * 40)
            self.block()
        elif tag == "pre":
            self.block()
            self.pre += 1
        elif tag == "a" and len(self.links) < _MAX_NESTING:
            self.links.append((attr.get("href"), len(self.out)))
        elif tag == "img" and attr.get("alt"):
            self.out.append(f"[{attr['alt']}]")
        elif tag in ("ul", "ol") and len(self.lists) < _MAX_NESTING:
            self.block("\n")
            self.lists.append([0] if tag == "ol" else None)
        elif tag == "li":
            self._li()
        elif tag == "table" and len(self.tables) < _MAX_NESTING:
            self.block()
            self.tables.append(_Table())
        elif tag == "tr" and self.tables:
            self._close_cell()
            self.tables[-1].rows.append([])
            self.tables[-1].kinds.append([])
        elif tag in ("td", "th") and self.tables:
            self._open_cell(header=tag == "th")

    def handle_endtag(self, tag: str) -> None:
        if self.hidden is not None:
            if tag == self.hidden[0]:
                depth = self.hidden[1] - 1
                self.hidden = (tag, depth) if depth else None
            return
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip or tag in _VOID:
            return
        if tag in _HEADINGS:
            if self.headings:
                self._underline(_HEADINGS[tag], *self.headings.pop())
            self.block()
        elif tag in _BLOCK:
            self.block()
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.block()
        elif tag == "a" and self.links:
            self._end_link()
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self.block("\n")
        elif tag in ("td", "th"):
            self._close_cell()
        elif tag == "table" and self.tables:
            self._close_cell()
            table = self.tables.pop()
            self.out.append(_render_table(table))
            self.block()

    def handle_data(self, data: str) -> None:
        if self.skip or self.hidden is not None:
            return
        if self.pre:
            self.out.append(data.replace(" ", _PRE_SPACE).replace("\t", _PRE_SPACE * 4))
        else:
            self.out.append(_SPACES.sub(" ", data))

    # -- elements ---------------------------------------------------------------------------

    def _li(self) -> None:
        self.out.append("\n")
        counter = self.lists[-1] if self.lists else None
        indent = "  " * max(0, len(self.lists) - 1)
        if counter is None:
            self.out.append(f"{indent}- ")
        else:
            counter[0] += 1
            self.out.append(f"{indent}{counter[0]}. ")

    def _end_link(self) -> None:
        href, start = self.links.pop()
        if not href or href.startswith("#"):
            return
        text = _SPACES.sub(" ", "".join(self.out[start:])).strip()
        target = href[len("mailto:") :] if href.startswith("mailto:") else href
        if target and target not in text:
            self.out.append(f" ({target})" if text else target)

    def _underline(self, char: str, buffer: list[str], start: int) -> None:
        if not char or buffer is not self.out:  # a table cell opened or closed inside it
            return
        text = "".join(buffer[start:]).rstrip().rsplit("\n", 1)[-1].strip()
        if text:
            self.out.append("\n" + char * min(len(text), 78))

    def _open_cell(self, *, header: bool) -> None:
        table = self.tables[-1]
        self._close_cell()
        if not table.rows:
            table.rows.append([])
            table.kinds.append([])
        table.kinds[-1].append(header)
        self.buffers.append([])
        table.cell_open = True

    def _close_cell(self) -> None:
        if not self.tables or not self.tables[-1].cell_open:
            return
        table = self.tables[-1]
        table.cell_open = False
        table.rows[-1].append(_tidy("".join(self.buffers.pop())))


def _tidy(text: str) -> str:
    lines = [line.strip() for line in text.split("\n")]
    return _MANY_BREAKS.sub("\n\n", "\n".join(lines)).strip("\n")


def _render_table(table: _Table) -> str:
    kept = [(r, all(k)) for r, k in zip(table.rows, table.kinds, strict=True) if any(r)]
    rows = [r for r, _ in kept]
    if not rows:
        return ""
    columns = max(len(r) for r in rows)
    layout = columns < 2 or any("\n" in c for r in rows for c in r)
    if layout:  # a layout table: its cells are blocks of text, one after the other
        return "\n\n".join(c for r in rows for c in r if c)
    if 2 * (columns - 1) >= _TABLE_WIDTH:  # too wide whatever the cells (and no padding)
        return "\n".join(" | ".join(c for c in r) for r in rows)
    rows = [r + [""] * (columns - len(r)) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(columns)]
    if sum(widths) + 2 * (columns - 1) > _TABLE_WIDTH:
        return "\n".join(" | ".join(c for c in r) for r in rows)
    lines = []
    for index, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if kept[index][1] and index + 1 < len(rows):
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def html_to_text(html: str) -> str:
    """Readable plain text for ``html``: blocks, links with their URLs, lists and tables."""
    converter = _Converter()
    converter.feed(html)
    while converter.tables:  # tolerate an unclosed table
        converter.handle_endtag("table")
    text = _tidy("".join(converter.buffers[0])).strip()
    return text.replace(_PRE_SPACE, " ").replace("\xa0", " ") + "\n"
