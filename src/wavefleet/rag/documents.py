"""Reading a person's files into text with places: pages of a PDF, headings of Markdown and HTML.

    doc = read_document(Path("notes/setup.md"))
    doc.text                     # what gets chunked; spans are offsets into it
    doc.sections[0].heading      # "Setup > From source"
    doc.sections[0].page         # None here; 1-based for PDF pages

Plain text and Markdown keep the file's characters as they are, so a chunk's span points into
the file itself. HTML keeps the visible text (no tags, scripts or styles) and PDF the text
pypdf extracts from each page; their spans point into that extracted text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from wavefleet.errors import UsageError

__all__ = ["KINDS", "ParsedDocument", "Section", "document_kind", "parse_text", "read_document"]

KINDS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}


@dataclass(frozen=True, slots=True)
class Section:
    """A stretch of the document's text under one heading or on one page."""

    start: int
    end: int
    heading: str | None = None
    page: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    kind: str
    text: str
    sections: tuple[Section, ...]
    title: str | None = None


def document_kind(path: Path) -> str | None:
    """`text`, `markdown`, `html` or `pdf` by the file's suffix; None for what is not read."""
    return KINDS.get(path.suffix.lower())


def read_document(path: Path) -> ParsedDocument:
    """The file's text and sections; a UsageError naming the file when it cannot be read."""
    kind = document_kind(path)
    if kind is None:
        raise UsageError(f"{path}: not a kind `wave rag ingest` reads (suffixes: {', '.join(sorted(KINDS))})")
    if kind == "pdf":
        return _read_pdf(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror})") from exc
    text = raw.decode("utf-8", errors="replace")
    return parse_text(text, kind)


def parse_text(text: str, kind: str) -> ParsedDocument:
    """Sections of text given as a string: `text`, `markdown` or `html`."""
    if kind == "markdown":
        return _markdown(text)
    if kind == "html":
        return _html(text)
    return ParsedDocument("text", text, (Section(0, len(text)),))


def _markdown(text: str) -> ParsedDocument:
    """Sections start at each ATX or setext heading (markdown-it's block map gives their lines);
    a section's heading is the path of headings above it, `Top > Sub`."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
    headings: list[tuple[int, int, str]] = []  # (char offset, level, text)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.map is not None:
            inline = tokens[index + 1]
            level = int(token.tag[1:])
            headings.append((line_starts[min(token.map[0], len(line_starts) - 1)], level, inline.content))
    title = next((h[2] for h in headings if h[1] == 1), None)
    sections: list[Section] = []
    if not headings or headings[0][0] > 0:
        sections.append(Section(0, headings[0][0] if headings else len(text)))
    trail: list[tuple[int, str]] = []
    for number, (offset, level, label) in enumerate(headings):
        trail = [(lv, name) for lv, name in trail if lv < level] + [(level, label)]
        end = headings[number + 1][0] if number + 1 < len(headings) else len(text)
        sections.append(Section(offset, end, " > ".join(name for _, name in trail)))
    return ParsedDocument("markdown", text, tuple(s for s in sections if s.end > s.start), title)


class _HtmlText(HTMLParser):
    """Visible text, with a section at each h1-h6 and block elements as line breaks."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCK = frozenset({"p", "div", "li", "tr", "br", "section", "article", "pre", "table", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.size = 0
        self.skipping = 0
        self.heading_level = 0
        self.heading_text: list[str] = []
        self.marks: list[tuple[int, int, str]] = []  # (offset, level, heading)
        self.title: str | None = None
        self.in_title = False

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag in self._SKIP:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._emit("\n\n")
            self.heading_level = int(tag[1])
            self.heading_text = []
            self.marks.append((self.size, self.heading_level, ""))
        elif tag in self._BLOCK:
            self._emit("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in self._SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self.heading_level:
            offset, level, _ = self.marks[-1]
            self.marks[-1] = (offset, level, " ".join("".join(self.heading_text).split()))
            self.heading_level = 0
            self._emit("\n")
        elif tag in self._BLOCK:
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title = (self.title or "") + data.strip()
        if self.skipping:
            return
        if self.heading_level:
            self.heading_text.append(data)
        self._emit(data)


def _html(source: str) -> ParsedDocument:
    parser = _HtmlText()
    parser.feed(source)
    parser.close()
    text = "".join(parser.parts)
    sections: list[Section] = []
    marks = parser.marks
    if not marks or marks[0][0] > 0:
        sections.append(Section(0, marks[0][0] if marks else len(text)))
    trail: list[tuple[int, str]] = []
    for number, (offset, level, label) in enumerate(marks):
        trail = [(lv, name) for lv, name in trail if lv < level] + [(level, label)]
        end = marks[number + 1][0] if number + 1 < len(marks) else len(text)
        sections.append(Section(offset, end, " > ".join(name for _, name in trail if name) or None))
    title = parser.title or next((m[2] for m in marks if m[1] == 1), None)
    return ParsedDocument("html", text, tuple(s for s in sections if s.end > s.start), title)


def _read_pdf(path: Path) -> ParsedDocument:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:  # the rag extra brings it
        raise UsageError(f"{path}: reading PDF needs pypdf; fix: pip install 'wavefleet[rag]'") from exc
    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{path}: not a PDF pypdf can read ({type(exc).__name__}: {exc})") from exc
    parts: list[str] = []
    sections: list[Section] = []
    offset = 0
    for number, page_text in enumerate(pages, start=1):
        if parts:
            parts.append("\n\n")
            offset += 2
        parts.append(page_text)
        sections.append(Section(offset, offset + len(page_text), None, number))
        offset += len(page_text)
    title = None
    if reader.metadata is not None and reader.metadata.title:
        title = str(reader.metadata.title)
    return ParsedDocument("pdf", "".join(parts), tuple(s for s in sections if s.end > s.start), title)
