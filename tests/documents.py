"""SOP documents made by the tests, the way training teams make them: Word with its built-in
list and heading styles, PowerPoint with speaker notes, a PDF laid out by ReportLab, Markdown
and an HTML page saved from a wiki."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def photo(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (640, 480)) -> Path:
    """A picture with some structure (a JPEG of one flat colour would be tiny)."""
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    for x in range(0, size[0], 40):
        draw.line([(x, 0), (size[0] - x, size[1])], fill=(255, 255, 255), width=3)
    image.save(path)
    return path


def lockout_docx(folder: Path) -> Path:
    """English: an intro, numbered steps with a nested sub-step, a picture, a warning, a steps
    table, a bulleted PPE list and a small logo repeated in three places."""
    import docx
    from docx.shared import Inches

    disconnect = photo(folder / "disconnect.png", (200, 40, 40))
    logo = photo(folder / "logo.png", (0, 90, 160), (120, 120))
    document = docx.Document()
    document.core_properties.title = "Lockout/Tagout for Conveyor Maintenance"
    document.add_picture(str(logo), width=Inches(0.5))
    document.add_heading("Lockout/Tagout for Conveyor Maintenance", 0)
    document.add_paragraph("This procedure protects you from the conveyor's stored energy. It "
                           "applies to every maintenance task on line 3. The conveyor runs at "
                           "480 V.")
    document.add_heading("Isolate the energy", 1)
    document.add_paragraph("Switch the conveyor off at the main disconnect.", style="List Number")
    document.add_paragraph("Check that the breaker shows OFF.", style="List Number 2")
    document.add_paragraph("Lock the isolator with your own padlock LOTO-7.", style="List Number")
    document.add_picture(str(disconnect), width=Inches(3))
    document.add_paragraph("Warning: stored energy in the brake can move the belt for 30 "
                           "seconds.")
    document.add_picture(str(logo), width=Inches(0.5))
    document.add_heading("Verify", 1)
    table = document.add_table(rows=3, cols=3)
    for row, cells in zip(table.rows, [("Step", "Action", "Check"),
                                       ("1", "Press the start button.", "Nothing moves."),
                                       ("2", "Wait 10 seconds.", "The belt stays still.")],
                          strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    box = document.add_table(rows=1, cols=1)      # a one-cell box, as SOP templates draw
    box.rows[0].cells[0].text = "Danger: never reach into the belt while it can move."
    document.add_heading("Protective equipment", 1)
    for item in ("Safety glasses", "Cut-resistant gloves", "Ear plugs"):
        document.add_paragraph(item, style="List Bullet")
    document.add_picture(str(logo), width=Inches(0.5))
    _in_content_control(document.add_paragraph("Report damaged equipment to your supervisor."))
    path = folder / "lockout.docx"
    document.save(path)
    return path


def _in_content_control(paragraph) -> None:
    """Wrap a paragraph in a content control (w:sdt), as company templates do."""
    from docx.oxml import OxmlElement

    sdt, content = OxmlElement("w:sdt"), OxmlElement("w:sdtContent")
    paragraph._p.addprevious(sdt)
    sdt.append(content)
    content.append(paragraph._p)


def thai_docx(folder: Path) -> Path:
    return _word(folder / "thai.docx", "การล็อกและติดป้ายเครื่องจักร", [
        ("Heading 1", "ตัดแหล่งพลังงาน"),
        ("List Number", "ปิดสวิตช์ตัดไฟหลักของสายพานลำเลียง"),
        ("List Number", "ล็อกด้วยกุญแจของคุณเอง หมายเลข 7"),
        (None, "คำเตือน: พลังงานที่สะสมอยู่อาจทำให้สายพานเคลื่อนที่ได้ 30 วินาที")])


def chinese_docx(folder: Path) -> Path:
    """Traditional Chinese, with the steps typed as numbered paragraphs (no Word numbering)."""
    return _word(folder / "chinese.docx", "輸送帶維修的上鎖掛牌程序", [
        (None, "本程序保護你免受輸送帶儲存能量的傷害。這適用於3號線的每一項維修工作。"),
        ("Heading 1", "隔離能源"),
        (None, "1. 在主電源開關處關閉輸送帶。"),
        (None, "2. 用你自己的掛鎖鎖上隔離開關。"),
        (None, "警告：煞車中的儲存能量可能使皮帶移動30秒。")])


def _word(path: Path, title: str, paragraphs: list[tuple[str | None, str]]) -> Path:
    """A Word document: the title in Word's Title style, then (style, text) paragraphs."""
    import docx

    document = docx.Document()
    document.add_heading(title, 0)
    for style, text in paragraphs:
        document.add_paragraph(text, style=style)
    document.save(path)
    return path


def deck_pptx(folder: Path) -> Path:
    """Four slides: notes and a picture; no notes (the body is read); a table; hidden."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[5])     # title only
    first.shapes.title.text = "Isolate the conveyor"
    first.shapes.add_picture(str(photo(folder / "small.png", (10, 10, 10), (200, 150))),
                             Inches(0.5), Inches(2), Inches(1.5))
    first.shapes.add_picture(str(photo(folder / "big.png", (30, 160, 60))), Inches(3),
                             Inches(2), Inches(5))
    first.notes_slide.notes_text_frame.text = ("Switch the conveyor off at the main disconnect. "
                                               "Then lock it with your own padlock.")
    second = deck.slides.add_slide(deck.slide_layouts[1])    # title and content
    second.shapes.title.text = "Wear your PPE"
    body = second.placeholders[1].text_frame
    body.text = "Safety glasses"
    body.add_paragraph().text = "Hearing protection above 85 dB"
    limits = deck.slides.add_slide(deck.slide_layouts[5])
    limits.shapes.title.text = "Limits"
    table = limits.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    for row, cells in enumerate([("Noise", "85 dB"), ("Load", "1,500 kg")]):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    hidden = deck.slides.add_slide(deck.slide_layouts[5])
    hidden.shapes.title.text = "Trainer's notes"
    hidden._element.set("show", "0")
    path = folder / "deck.pptx"
    deck.save(path)
    return path


def lockout_pdf(folder: Path) -> Path:
    """A PDF laid out by ReportLab: title, headings, body text, a numbered list, a picture, a
    warning and a steps table."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import (
        Image as PdfImage,
    )
    from reportlab.platypus import (
        ListFlowable,
        ListItem,
        PageBreak,
        Paragraph,
        SimpleDocTemplate,
        Table,
    )

    styles = getSampleStyleSheet()
    picture = photo(folder / "pdf-photo.png", (40, 40, 200))

    def furniture(canvas, document) -> None:   # a running header and footer on every page
        canvas.setFont("Helvetica", 8)
        canvas.drawString(72, 810, "ACME Plant 2 - SOP-114 Rev 3")
        canvas.drawString(280, 30, f"Page {document.page}")

    story = [
        Paragraph("Lockout Procedure", styles["Title"]),
        Paragraph("Isolate energy", styles["Heading2"]),
        Paragraph("Before you start, read the whole procedure. The conveyor runs at 480 V and "
                  "stores energy in its brake for up to 30 seconds after you switch it off.",
                  styles["BodyText"]),
        ListFlowable([ListItem(Paragraph("Switch off the conveyor at the main disconnect.",
                                         styles["BodyText"])),
                      ListItem(Paragraph("Lock the isolator with your own padlock.",
                                         styles["BodyText"]))], bulletType="1"),
        PdfImage(str(picture), width=200, height=150),
        Paragraph("WARNING: Stored energy can move the belt for 30 seconds.",
                  styles["BodyText"]),
        PageBreak(),
        Paragraph("Verify", styles["Heading2"]),
        Table([["Step", "Action"], ["1", "Press the start button."],
               ["2", "Confirm that nothing moves."]]),
        PageBreak(),
        Paragraph("Remove the lock only when the work is done and everyone is clear.",
                  styles["BodyText"]),
        ListFlowable([ListItem(Paragraph(text, styles["BodyText"]))
                      for text in ("Your padlock", "Your tag")], bulletType="bullet"),
    ]
    path = folder / "lockout.pdf"
    SimpleDocTemplate(str(path), pagesize=A4, title="Lockout Procedure").build(
        story, onFirstPage=furniture, onLaterPages=furniture)
    return path


def checklist_pdf(folder: Path, pages: int = 4) -> Path:
    """A page per section, each ending in steps worded alike (at different heights) under a
    running header and footer: only the header and footer are page furniture."""
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()

    def furniture(canvas, document) -> None:
        canvas.setFont("Helvetica", 8)
        canvas.drawString(72, 810, "ACME Plant 2 - checklist")
        canvas.drawString(280, 30, f"Page {document.page} of {pages}")

    story = []
    for page in range(1, pages + 1):
        story += [Paragraph(f"Area {page}", styles["Heading2"]),
                  *[Paragraph("Walk the area and look for spills. " * page, styles["BodyText"])],
                  *[Paragraph(f"{n}. Check point {n} of area {page} and record it.",
                              styles["BodyText"]) for n in range(1, 4)], PageBreak()]
    path = folder / "checklist.pdf"
    SimpleDocTemplate(str(path)).build(story[:-1], onFirstPage=furniture,
                                       onLaterPages=furniture)
    return path


def chinese_pdf(folder: Path) -> Path:
    """Traditional Chinese in Adobe's standard CID font, paragraphs with no spacing between."""
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    pdfmetrics.registerFont(UnicodeCIDFont("MSung-Light"))
    title = ParagraphStyle("title", fontName="MSung-Light", fontSize=18, leading=24)
    body = ParagraphStyle("body", fontName="MSung-Light", fontSize=11, leading=15)
    path = folder / "chinese.pdf"
    SimpleDocTemplate(str(path)).build([
        Paragraph("上鎖掛牌程序", title), Paragraph("1. 在主電源開關處關閉輸送帶。", body),
        Paragraph("2. 用你自己的掛鎖鎖上隔離開關。", body),
        Paragraph("警告：煞車中的儲存能量可能使皮帶移動30秒。", body)])
    return path


MARKDOWN = """\
---
title: Forklift pre-shift check
owner: EHS
---
# Forklift pre-shift check

Check the truck before every shift. A fault found now costs minutes; one found under load
costs far more.

## Walk around

1. Look for leaks under the truck.
2. Check the forks for cracks.
   - Look at the heel of each fork.
   - Look at the tips.
3. Check the tyres.

![The forks](forks.png)

> [!WARNING]
> Never lift more than 1,500 kg with this truck.

## Test the controls

| Step | Action | Expected |
|------|--------|----------|
| 1 | Sound the horn | A clear tone |
| 2 | Test the brakes | The truck stops within 2 m |

## Park

4.1 Park on level ground, forks lowered.

**CAUTION**

The engine stays hot for 20 minutes.
"""

WIKI_PAGE = """\
<html><head><title>Chemical spill response</title><style>p {color: red}</style></head>
<body><nav><a href="/">Home</a> | <a href="/sops">SOPs</a></nav>
<h1>Chemical spill response</h1>
<p>Spills of up to 5 litres are handled by the trained team on shift.</p>
<h2>Respond</h2>
<ol><li>Raise the alarm on channel 4.</li><li>Put on the spill kit gloves.</li>
<li>Contain the spill with the absorbent boom.</li></ol>
<div class="confluence-information-macro confluence-information-macro-warning">
<p>Do not use water on acid spills.</p></div>
<p><img src="spill-kit.png" alt="The spill kit"> <img src="https://example.com/remote.png"></p>
<footer>Page last edited by the EHS team</footer>
</body></html>
"""


def forklift_md(folder: Path) -> Path:
    photo(folder / "forks.png", (220, 180, 0))
    path = folder / "forklift.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    return path


def spill_html(folder: Path) -> Path:
    photo(folder / "spill-kit.png", (0, 150, 150))
    path = folder / "spill.html"
    path.write_text(WIKI_PAGE, encoding="utf-8")
    return path
