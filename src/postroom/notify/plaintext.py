"""Plain text from an HTML mail body (pure), for templates that give no text part.

Mail clients that show text, screen readers and spam filters all read the text part,
so it must carry the same content as the HTML: paragraphs stay paragraphs, links keep
their address (``text (url)``), list items get a marker, and data tables become
aligned columns. Layout tables (one column, or cells holding whole paragraphs, as
mail layouts use them) flow as plain blocks instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

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


@dataclass
class _Table:
    rows: list[list[str]] = field(default_factory=list)
    #: per row, whether each cell is a <th>: a row of only <th> is a header row
    kinds: list[list[bool]] = field(default_factory=list)
    cell_open: bool = False


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # one buffer per open table cell, so a cell's text can be laid out as a column
        self.buffers: list[list[str]] = [[]]
        self.skip = 0
        self.pre = 0
        self.links: list[tuple[str | None, int]] = []
        self.lists: list[list[int] | None] = []  # a counter for <ol>, None for <ul>
        self.tables: list[_Table] = []
        # an element hidden with display:none (a mail preheader) and its nesting depth
        self.hidden: tuple[str, int] | None = None

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
        elif tag == "br":
            self.out.append("\n")
        elif tag == "hr":
            self.block()
            self.out.append("-" * 40)
            self.block()
        elif tag == "pre":
            self.block()
            self.pre += 1
        elif tag == "a":
            self.links.append((attr.get("href"), len(self.out)))
        elif tag == "img" and attr.get("alt"):
            self.out.append(f"[{attr['alt']}]")
        elif tag in ("ul", "ol"):
            self.block("\n")
            self.lists.append([0] if tag == "ol" else None)
        elif tag == "li":
            self._li()
        elif tag == "table":
            self.block()
            self.tables.append(_Table())
        elif tag == "tr" and self.tables:
            self._close_cell()
            self.tables[-1].rows.append([])
            self.tables[-1].kinds.append([])
        elif tag in ("td", "th") and self.tables:
            self._open_cell(header=tag == "th")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

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
            self._underline(_HEADINGS[tag])
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

    def _underline(self, char: str) -> None:
        if not char:
            return
        text = "".join(self.out).rstrip().rsplit("\n", 1)[-1].strip()
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
    converter.close()
    while converter.tables:  # tolerate an unclosed table
        converter.handle_endtag("table")
    text = _tidy("".join(converter.buffers[0])).strip()
    return text.replace(_PRE_SPACE, " ").replace("\xa0", " ") + "\n"
