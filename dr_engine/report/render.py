"""Renderers: a report model -> JSON, Markdown, self-contained HTML, PDF.

Pure functions of the model: they read no files except their own templates and write
nothing (:mod:`dr_engine.report.publish` writes). HTML embeds its CSS and its charts (SVG as
``data:`` URIs), so one file is the whole report and prints well (``@media print`` and
``@page`` rules: A4, page numbers, no broken table rows). PDF is that same HTML laid out
by WeasyPrint.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel

from dr_engine import __version__
from dr_engine.evidence.redact import redact_text
from dr_engine.report.formatting import fmt_bytes, fmt_date, fmt_percent, fmt_seconds, fmt_ts

TEMPLATES = Path(__file__).parent / "templates"


def _cell(value: Any) -> str:
    """A Markdown table cell: no pipes or line breaks."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@cache
def environment() -> Environment:
    """The Jinja environment with the report filters (autoescape for HTML only)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters.update(ts=fmt_ts, dur=fmt_seconds, bytes=fmt_bytes, pct=fmt_percent, day=fmt_date, cell=_cell)
    return env


def svg_data_uri(svg: bytes) -> str:
    """An SVG as a ``data:`` URI for ``<img src>`` (works in browsers and WeasyPrint)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _common(report: Any, generated_at: str) -> dict[str, Any]:
    return {"r": report, "version": __version__, "generated_at": generated_at,
            "today": datetime.now(UTC).date() if not generated_at else _day(generated_at)}


def _day(stamp: str) -> date:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).date()
    except ValueError:
        return datetime.now(UTC).date()


def render_json(report: BaseModel) -> str:
    """The report model as stable, indented JSON (the machine-readable report)."""
    data = report.model_dump(mode="json", by_alias=True)
    return redact_text(json.dumps(data, indent=2, ensure_ascii=False)) + "\n"


def render_html(report: Any, *, template: str, charts: dict[str, bytes], title: str, footer_left: str) -> str:
    """Render an HTML template with inline charts (``charts``: name -> SVG bytes)."""
    context = _common(report, str(getattr(report, "generated_at", "")))
    # Charts go in after redaction: scanning kilobytes of base64 for credentials is slow and pointless.
    context.update({name + "_img": f"@@chart-{name}@@" for name in charts})
    context.update(page_title=title, footer_left=footer_left.replace('"', "'"))
    html = redact_text(environment().get_template(template).render(**context))
    for name, svg in charts.items():
        html = html.replace(f"@@chart-{name}@@", svg_data_uri(svg))
    return html


def render_markdown(report: Any, *, template: str, chart_ref: str | None = None) -> str:
    """Render a Markdown template; ``chart_ref`` is the relative path of a PNG chart, if any."""
    context = _common(report, str(getattr(report, "generated_at", "")))
    context["chart_ref"] = chart_ref
    return redact_text(environment().get_template(template).render(**context))


def render_pdf(html: str) -> bytes:
    """Lay out rendered HTML as a PDF with WeasyPrint (imported lazily: it is slow to import)."""
    import logging

    from weasyprint import HTML

    # WeasyPrint logs every unsupported CSS property at WARNING; the browser-only rules in our
    # stylesheet (e.g. box-shadow on screen) are expected, so keep its chatter out of CLI output.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    pdf: bytes = HTML(string=html, base_url=str(TEMPLATES)).write_pdf()
    return pdf


__all__ = ["environment", "render_html", "render_json", "render_markdown", "render_pdf", "svg_data_uri"]
