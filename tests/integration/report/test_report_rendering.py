"""The HTML report in real headless Chromium, and the PDF rendered to images with pdftoppm."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from dr_engine.report.period import build_period_report
from dr_engine.report.publish import render_period_files, write_run_reports
from dr_engine.testing.sample_runs import CANARIES, SampleRuns

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"


def screenshot(html: Path, png: Path, profile: Path) -> None:
    """Render ``html`` in headless Chromium to ``png`` (1280x2000)."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", f"--screenshot={png}",
         "--window-size=1280,2000", "--hide-scrollbars", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def assert_not_blank(png: Path) -> Image.Image:
    """The image exists and has real content: several colours and visible variance."""
    assert png.is_file() and png.stat().st_size > 0
    image = Image.open(png).convert("RGB")
    stat = ImageStat.Stat(image.convert("L"))
    assert stat.stddev[0] > 20, f"{png} looks blank (stddev {stat.stddev[0]:.1f})"
    assert len(image.getcolors(maxcolors=1 << 20) or []) > 50
    return image


def test_run_report_html_renders_in_chromium(samples: SampleRuns, tmp_path: Path) -> None:
    written = write_run_reports(samples.runs["failed"], ["html"], tmp_path / "out")
    html = next(p for p in written if p.name == "report.html")
    text = html.read_text()
    # Self-contained: no external stylesheet, script or image.
    assert "<link" not in text and "<script" not in text and 'src="http' not in text
    assert "@media print" in text and "data:image/svg+xml;base64," in text
    png = tmp_path / "run.png"
    screenshot(html, png, tmp_path / "profile")
    image = assert_not_blank(png)
    assert image.size == (1280, 2000)
    # The masthead is the brand colour and the FAILED verdict is drawn in red somewhere on top.
    top = image.crop((0, 0, 1280, 200))
    colours = {c for _, c in top.getcolors(maxcolors=1 << 20) or []}
    assert (0x1F, 0x3A, 0x5F) in colours
    assert (0xC5, 0x30, 0x30) in colours


def test_period_report_html_renders_in_chromium(samples: SampleRuns, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    period = build_period_report(samples.state_dir, since=datetime(2026, 1, 1, tzinfo=UTC),
                                 until=datetime(2027, 1, 1, tzinfo=UTC), runbooks_dir=samples.project / "runbooks",
                                 now=datetime(2027, 1, 1, tzinfo=UTC))
    html = tmp_path / "period-report.html"
    html.write_bytes(render_period_files(period, ["html"])["period-report.html"])
    png = tmp_path / "period.png"
    screenshot(html, png, tmp_path / "profile")
    assert_not_blank(png)


def test_pdf_pages_render_and_carry_the_content(samples: SampleRuns, tmp_path: Path) -> None:
    written = write_run_reports(samples.runs["failover"], ["pdf"], tmp_path / "out")
    pdf = next(p for p in written if p.name == "report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    done = subprocess.run(["pdftoppm", "-r", "50", "-png", str(pdf), str(tmp_path / "page")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    assert_not_blank(pages[0])
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, timeout=120,
                          check=True).stdout
    run_id = samples.run_id("failover")
    for expected in (run_id, "Objectives and results", "Integrity and retention", "allow-data-loss", "bob@risk",
                     "page 1 of"):
        assert expected in text
    assert not any(c in text for c in CANARIES)
