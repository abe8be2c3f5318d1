"""Render the comparison report's summary (see :mod:`peftlab.report`) as Markdown, as one
self-contained HTML page (inline CSS, charts as data: URIs, no script, no network), and
as plain text for the terminal."""

from __future__ import annotations

import re
from html import escape

TEXT_COLUMNS = [
    "Method",
    "Status",
    "Trainable params",
    "Peak memory",
    "Wall time",
    "Tokens/s",
    "Perplexity",
    "Exact match",
]


def _lede(s: dict) -> str:
    rows = s["rows"]
    n_ok = sum(r["Status"] == "ok" for r in rows)
    parts = [
        f"{len(rows)} run{'s' * (len(rows) != 1)}: {n_ok} finished"
        + (f", {len(s['failed'])} failed" if s["failed"] else "")
    ]
    st = dict(s["settings"])
    for k in ("Model", "Dataset", "Budget", "Seed"):
        if k in st and not st[k].startswith("varies"):
            parts.append(f"{k.lower()} {st[k]}")
    return " · ".join(parts)


def _md_cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _md_table(header: list[str], rows: list[list[str]], right_from: int = 99) -> list[str]:
    align = ["---:" if i >= right_from else "---" for i in range(len(header))]
    out = ["| " + " | ".join(map(_md_cell, header)) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
    return out + [""]


def render_markdown(s: dict) -> str:
    cols = s["columns"]
    md = ["# peftlab comparison report", "", _lede(s), "", "## Results", ""]
    md += _md_table(cols, [[r[c] for c in cols] for r in s["rows"]], right_from=2)
    md += [
        "Perplexity and eval loss: before → after training, on the same held-out records. "
        "Merge check: largest logit difference between the merged and the adapter model. "
        "Adapter size: the saved weights (the whole model where every weight trained).",
        "",
    ]
    for title, key, note in EXTRA_TABLES:
        if s.get(key):
            md += [f"## {title}", ""]
            md += _md_table(s[f"{key}_columns"], s[key], right_from=1)
            md += [note, ""]
    md += ["## Which method when", ""]
    if not s["findings"]:
        md += ["No method finished, so there is nothing to compare; see the failed runs below.", ""]
    for f in s["findings"]:
        who = f" — {', '.join(f['winners'])}" if f["winners"] else ""
        md.append(f"- **{f['title']}{who}.** {_md_cell(f['text'])}")
    md += ["", "## Charts", ""]
    md += [f"![{_md_cell(i['title'])}]({i['file']})\n" for i in s["images"]] or [
        "No finished run to chart.",
        "",
    ]
    if s["failed"]:
        md += ["## Failed runs", ""]
        md += _md_table(
            ["Run", "Method", "Error"],
            [
                [f["name"], f["method"] or "?", f["error"] or "(no error recorded)"]
                for f in s["failed"]
            ],
        )
    md += ["## Shared settings", ""] + _md_table(["Setting", "Value"], s["settings"])
    if s["method_options"]:
        md += ["Method options:", ""] + _md_table(["Run", "Options"], s["method_options"])
    md += ["## Environment", ""] + _md_table(["Component", "Version / value"], s["environment"])
    if s["skipped_lines"]:
        md += [f"{s['skipped_lines']} unreadable line(s) of results.jsonl were skipped.", ""]
    return "\n".join(md)


CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans",
       Arial, sans-serif; font-size: 15px; line-height: 1.5; color: #1f2328;
       background: #ffffff; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 10px; padding-bottom: 4px;
     border-bottom: 1px solid #d8dee4; }
.lede { color: #57606a; margin: 0 0 8px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 6px 8px; border-bottom: 1px solid #e5e7eb; text-align: left;
         vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
.nw { white-space: nowrap; }
table.results { width: 100%; }
table.results td, table.results th { text-align: right; }
table.results td:nth-child(-n+2), table.results th:nth-child(-n+2) { text-align: left; }
table.results tr:nth-child(even) td { background: #fafbfc; }
tr.failed td { background: #fff5f5 !important; color: #6e7781; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
         font-weight: 600; }
.ok { background: #dafbe1; color: #116329; } .bad { background: #ffebe9; color: #a40e26; }
.note { color: #57606a; font-size: 13px; }
ul.findings { padding-left: 20px; } ul.findings li { margin: 6px 0; }
figure { margin: 16px 0; } figure img { max-width: 100%; height: auto; display: block;
         border: 1px solid #eaeef2; border-radius: 4px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
@media (max-width: 900px) { .pair { grid-template-columns: 1fr; } }
table.kv td:first-child { color: #57606a; white-space: nowrap; }
pre.err { white-space: pre-wrap; margin: 0; font-size: 12.5px; }
"""


FORGETTING_NOTE = (
    "Every run and the base model scored on a general instruction set that is not the "
    "training data. In-domain: before → after training on the held-out records. Change vs "
    "base: the general-set perplexity against the untrained model's, with the 95% "
    "paired-bootstrap interval of the difference over the same records; a rise is what "
    "fine-tuning cost elsewhere."
)
BENCHMARKS_NOTE = (
    "The base model and every run scored by lm-evaluation-harness on its tasks (the "
    "harness's standard error beside each score). Change vs base: the run's score minus "
    "the base's, with the 95% paired-bootstrap interval over the same documents where "
    "the score is the mean of the documents' scores."
)
SEEDS_NOTE = (
    "Each cell: the mean over the method's seeds ± the sample standard deviation "
    "across them (the seeds change the data order and the adapter's "
    "initialisation); the verdicts resample eval records and seeds together."
)
# (title, summary key, note) of the tables after the results, in order
EXTRA_TABLES = [
    ("Over seeds: mean ± spread per method", "seeds", SEEDS_NOTE),
    ("Forgetting: the general set", "forgetting", FORGETTING_NOTE),
    ("Standard benchmarks (lm-evaluation-harness)", "benchmarks", BENCHMARKS_NOTE),
]


def _kv(rows: list[tuple[str, str]]) -> str:
    return (
        '<table class="kv">'
        + "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _figure(img: dict, uri: str) -> str:
    return f'<figure><img alt="{escape(img["title"])}" src="{uri}"></figure>'


def _cell(text: str) -> str:
    """A table cell that may wrap only before a parenthesis."""
    return " ".join(
        f'<span class="nw">{escape(part)}</span>' for part in re.split(r" (?=\()", text)
    )


def render_html(s: dict, uris: list[str]) -> str:
    cols = s["columns"]
    h = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>peftlab comparison report</title><style>{CSS}</style></head><body><main>",
        "<h1>peftlab comparison report</h1>",
        f'<p class="lede">{escape(_lede(s))}</p>',
        '<h2>Results</h2><div class="scroll"><table class="results"><thead><tr>',
        "".join(f"<th>{escape(c)}</th>" for c in cols),
        "</tr></thead><tbody>",
    ]
    h += _results(s) + _findings(s) + ["<h2>Charts</h2>"] + _charts(s, uris) + _appendix(s)
    h.append("</main></body></html>\n")
    return "\n".join(h)


def _results(s: dict) -> list[str]:
    """The results table, rows of failed runs marked, then the extra tables."""
    h = []
    for r in s["rows"]:
        ok = r["Status"] == "ok"
        cells = [
            f'<span class="badge {"ok" if ok else "bad"}">{escape(v)}</span>'
            if c == "Status"
            else _cell(v)
            for c, v in r.items()
        ]
        h.append(
            f'<tr class="{"" if ok else "failed"}">'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    h += [
        "</tbody></table></div>",
        '<p class="note">Perplexity and eval loss: before → after training, on the same '
        "held-out records. Merge check: largest logit difference between the merged and "
        "the adapter model (✓ within tolerance). Adapter size: the saved weights (the "
        "whole model where every weight trained).</p>",
    ]
    for title, key, note in EXTRA_TABLES:
        if not s.get(key):
            continue
        h += [
            f"<h2>{escape(title)}</h2>",
            '<div class="scroll"><table class="results"><thead><tr>',
            "".join(f"<th>{escape(c)}</th>" for c in s[f"{key}_columns"]),
            "</tr></thead><tbody>",
        ]
        h += ["<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in s[key]]
        h += ["</tbody></table></div>", f'<p class="note">{escape(note)}</p>']
    return h


def _findings(s: dict) -> list[str]:
    h = []
    h.append("<h2>Which method when</h2>")
    if not s["findings"]:
        h.append(
            "<p>No method finished, so there is nothing to compare; see the failed runs below.</p>"
        )
    h.append('<ul class="findings">')
    for f in s["findings"]:
        who = f" — {escape(', '.join(f['winners']))}" if f["winners"] else ""
        h.append(f"<li><b>{escape(f['title'])}{who}.</b> {escape(f['text'])}</li>")
    h.append("</ul>")
    return h


def _charts(s: dict, uris: list[str]) -> list[str]:
    """Every chart, the memory and throughput bars side by side."""
    h = []
    figs = list(zip(s["images"], uris))
    bars = [(i, u) for i, u in figs if i["file"] in ("report_memory.png", "report_throughput.png")]
    for img, uri in figs:
        if (img, uri) in bars:
            if (img, uri) == bars[0]:
                h.append('<div class="pair">' + "".join(_figure(i, u) for i, u in bars) + "</div>")
            continue
        h.append(_figure(img, uri))
    if not figs:
        h.append("<p>No finished run to chart.</p>")
    return h


def _appendix(s: dict) -> list[str]:
    """Failed runs, shared settings, method options, environment."""
    h = []
    if s["failed"]:
        h.append("<h2>Failed runs</h2><table><tr><th>Run</th><th>Method</th><th>Error</th></tr>")
        h += [
            f"<tr><td>{escape(f['name'])}</td><td>{escape(str(f['method'] or '?'))}</td>"
            f'<td><pre class="err">{escape(f["error"] or "(no error recorded)")}</pre></td></tr>'
            for f in s["failed"]
        ]
        h.append("</table>")
    h += ["<h2>Shared settings</h2>", _kv(s["settings"])]
    if s["method_options"]:
        h += ['<p class="note">Method options</p>', _kv(s["method_options"])]
    h += ["<h2>Environment</h2>", _kv(s["environment"])]
    if s["skipped_lines"]:
        h.append(
            f'<p class="note">{s["skipped_lines"]} unreadable line(s) of results.jsonl '
            "were skipped.</p>"
        )
    return h


def summary_text(s: dict) -> str:
    """The table (main columns), the findings and the report's paths, for a terminal."""
    rows = [TEXT_COLUMNS] + [[r[c] for c in TEXT_COLUMNS] for r in s["rows"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TEXT_COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", "Which method when:"]
    lines += [f"  {f['title']}: {f['text']}" for f in s["findings"]] or ["  no method finished"]
    for f in s["failed"]:
        lines.append(f"failed: {f['name']}: {f['error'] or '(no error recorded)'}")
    lines += ["", f"report: {s['report_html']}", f"        {s['report_md']}"]
    return "\n".join(lines)
