"""Reading files into sections and cutting them into token chunks with spans."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from wavefleet.errors import UsageError
from wavefleet.rag.chunking import Chunker, load_tokenizer
from wavefleet.rag.documents import parse_text, read_document
from wavefleet.rag.model import bundled_model


def minimal_pdf(pages: list[str]) -> bytes:
    """A real PDF with one line of text a page (Helvetica), xref offsets computed."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        content = zlib.compress(stream)
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream"
        )
        content_ref = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
            % content_ref
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_markdown_sections_carry_their_heading_path(tmp_path: Path) -> None:
    path = tmp_path / "garden.md"
    path.write_text(
        "Intro line.\n\n# Garden\n\nSun.\n\n## Pests\n\nAphids: soapy water.\n\n# House\n\nRoof.\n"
    )
    doc = read_document(path)
    assert [s.heading for s in doc.sections] == [None, "Garden", "Garden > Pests", "House"]
    pests = doc.sections[2]
    assert "Aphids: soapy water." in doc.text[pests.start : pests.end]
    assert doc.title == "Garden"


def test_html_keeps_visible_text_under_headings(tmp_path: Path) -> None:
    path = tmp_path / "car.html"
    path.write_text(
        "<html><head><title>Car notes</title><style>p{color:red}</style></head><body>"
        "<h1>Car</h1><p>Oil every 10,000 km.</p><script>var secret = 1;</script>"
        "<h2>Tyres</h2><p>Winter tyres in November.</p></body></html>"
    )
    doc = read_document(path)
    assert "secret" not in doc.text and "color" not in doc.text
    tyres = next(s for s in doc.sections if s.heading == "Car > Tyres")
    assert "Winter tyres in November." in doc.text[tyres.start : tyres.end]
    assert doc.title == "Car notes"


def test_pdf_pages_are_sections_with_page_numbers(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(minimal_pdf(["The pump is on page one.", "Descale the kettle monthly."]))
    doc = read_document(path)
    assert [s.page for s in doc.sections] == [1, 2]
    second = doc.sections[1]
    assert "Descale the kettle monthly." in doc.text[second.start : second.end]


def test_broken_pdf_and_unknown_kind_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4 this is not a pdf")
    with pytest.raises(UsageError, match="bad.pdf"):
        read_document(bad)
    with pytest.raises(UsageError, match="suffixes"):
        read_document(tmp_path / "x.docx")


def test_chunks_overlap_and_their_spans_are_the_text() -> None:
    tokenizer = load_tokenizer(bundled_model().tokenizer)
    words = " ".join(f"word{i}" for i in range(400))
    doc = parse_text(words, "text")
    chunker = Chunker(tokenizer, size=64, overlap=16)
    chunks = list(chunker.chunks(doc))
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert chunk.tokens <= 64
        assert chunker.count(chunk.text) <= 64
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end  # neighbours share text
    assert chunks[-1].end == len(words)


def test_chunk_settings_are_checked() -> None:
    tokenizer = load_tokenizer(bundled_model().tokenizer)
    with pytest.raises(UsageError, match="overlap"):
        Chunker(tokenizer, size=100, overlap=100)
