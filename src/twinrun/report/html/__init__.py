"""Self-contained HTML reports: one file per record, plots inline as SVG, nothing fetched, no
script.

- `page`: escaping and the document frame (style, Content-Security-Policy, tables);
- `svg`: the plots (line charts, heatmaps, bar charts); `strip`: the studies' strip plots;
- one module per kind of record, each with `render(report) -> Html`: `run`, `check`, `study`
  (which also renders two studies compared, `render_compare`).
"""

from twinrun.report.html import check, run, study

PAGES = {"run": run.render, "check": check.render, "study": study.render,
         "compare": study.render_compare}


def render_html(report):
    """One record's report (`twinrun.report.records.load_report`) as an HTML document.

    Arguments:
        report: a dict with `kind` among `PAGES`.

    Example:

        html = render_html(load_report(store, "check-20240501"))
        Path("check.html").write_text(html, encoding="utf-8")
    """
    return PAGES[report["kind"]](report)
