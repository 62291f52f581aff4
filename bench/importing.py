"""Benchmark: what `sopreel import` costs. A Word SOP of SECTIONS sections (a paragraph, ten
numbered steps and a 1280x960 photo each), the same SOP as a PDF, and a deck of as many slides
(speaker notes and a photo each), each imported in process (best of the runs) and the Word file
once more on the command line, in a fresh process as a user runs it; then the LLM rewrite's own
cost per scene against a local OpenAI-compatible stub that answers at once (a real model's
time is the model's, and is not sopreel's to measure).

Usage: .venv/bin/python bench/importing.py [--quick]   (--quick: 2 sections, one run)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_args import ROOT, SOPREEL, add_quick, print_provenance, print_table

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from documents import photo  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402

from stages.importer import import_document  # noqa: E402
from stages.importer.rewrite import ChatClient, Rewriter  # noqa: E402

STEPS = 10
INTRO = ("This section covers the work on line {n} in the order it must be done. Read it "
         "before you start, and stop if anything differs from what it says. ")


def word(folder: Path, sections: int) -> Path:
    import docx
    from docx.shared import Inches

    document = docx.Document()
    document.add_heading("Line maintenance", 0)
    for n in range(1, sections + 1):
        document.add_heading(f"Section {n}", 1)
        document.add_paragraph(INTRO.format(n=n) * 2)
        for step in range(1, STEPS + 1):
            document.add_paragraph(f"Check point {step} of section {n} and record it.",
                                   style="List Number")
        document.add_picture(str(photo(folder / f"photo-{n}.png", (n * 15 % 255, 90, 160),
                                       (1280, 960))), width=Inches(4))
    path = folder / "sop.docx"
    document.save(path)
    return path


def pdf(folder: Path, sections: int) -> Path:
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Image, ListFlowable, ListItem, Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()
    story = [Paragraph("Line maintenance", styles["Title"])]
    for n in range(1, sections + 1):
        story += [Paragraph(f"Section {n}", styles["Heading2"]),
                  Paragraph(INTRO.format(n=n) * 2, styles["BodyText"]),
                  ListFlowable([ListItem(Paragraph(f"Check point {step} of section {n} and "
                                                   "record it.", styles["BodyText"]))
                                for step in range(1, STEPS + 1)], bulletType="1"),
                  Image(str(folder / f"photo-{n}.png"), width=240, height=180)]
    path = folder / "sop.pdf"
    SimpleDocTemplate(str(path)).build(story)
    return path


def slides(folder: Path, sections: int) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for n in range(1, sections + 1):
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        slide.shapes.title.text = f"Section {n}"
        slide.shapes.add_picture(str(folder / f"photo-{n}.png"), Inches(2), Inches(2),
                                 Inches(5))
        slide.notes_slide.notes_text_frame.text = INTRO.format(n=n)
    path = folder / "sop.pptx"
    deck.save(path)
    return path


def best_of(runs: int, call) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick(parser)
    parser.add_argument("--sections", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    sections = args.sections or (2 if args.quick else 15)
    runs = args.runs or (1 if args.quick else 3)
    print_provenance()
    folder = Path(tempfile.mkdtemp(prefix="sopreel-bench-import-"))
    documents = {"Word": word(folder, sections)}
    documents["PDF"] = pdf(folder, sections)
    documents["PowerPoint"] = slides(folder, sections)
    rows, plain_seconds = [], {}
    for kind, path in documents.items():
        seconds, result = best_of(runs, lambda path=path: import_document(
            path, folder / f"{path.stem}-{path.suffix[1:]}.yaml", force=True))
        plain_seconds[kind] = seconds
        rows.append([kind, f"{path.stat().st_size / 2**20:.1f} MB", str(result.scenes),
                     str(result.photos), f"{seconds:.2f} s",
                     f"{seconds / result.scenes * 1000:.0f} ms"])
    started = time.perf_counter()
    subprocess.run([str(SOPREEL), "import", str(documents["Word"]), "--out",
                    str(folder / "cli.yaml")], check=True, capture_output=True)
    command_line = time.perf_counter() - started
    rows.append(["Word, `sopreel import` in a new process", "", "", "",
                 f"{command_line:.2f} s", ""])
    print_table(["document", "size", "scenes", "photos", "import", "per scene"], rows)
    with FakeLLM("rewrite") as llm:
        rewriter = Rewriter(ChatClient(llm.url, "stub"))
        seconds, result = best_of(runs, lambda: import_document(
            documents["Word"], folder / "rewritten.yaml", force=True, rewriter=rewriter))
    overhead = (seconds - plain_seconds["Word"]) / result.scenes
    print_table(["LLM rewrite (stub that answers at once)", "seconds"], [
        ["Word import with the rewrite", f"{seconds:.2f}"],
        ["sopreel's own cost per scene (request, checks), beyond the model", f"{overhead:.3f}"]])


if __name__ == "__main__":
    main()
