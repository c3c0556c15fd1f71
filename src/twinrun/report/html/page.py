"""The frame of every HTML report: escaping, the self-contained page, sections and tables.

Every string that reaches the page goes through `escape`, except fragments this package built
itself, which are `Html` (a `str` subclass) and pass through as they are. So a run named
`<script>alert(1)</script>` or a script argument `"><img src=x onerror=alert(1)>` is shown as
text: there is no path for user text into markup other than `html.escape`.

The page fetches nothing and runs nothing: its Content-Security-Policy allows only the inline
style sheet (no scripts, no images, fonts or frames from anywhere), and the plots are inline SVG.
"""

import html
import json

from twinrun.report.formatting import number

# No scripts, no connections, nothing from outside the file: only the page's own <style>.
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STYLE = """
:root { --fg: #1d232b; --muted: #5b6673; --line: #d8dee6; --bg: #ffffff; --panel: #f5f7fa;
        --ok: #1a7f37; --bad: #c62828; --warn: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: var(--bg); }
main { max-width: 1100px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5em; margin: 0.2em 0 0.1em; overflow-wrap: anywhere; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; border-bottom: 1px solid var(--line); }
p.sub { color: var(--muted); margin: 0 0 1em; overflow-wrap: anywhere; }
.verdict { display: inline-block; padding: 0.15em 0.6em; border-radius: 4px; color: #fff;
           font-weight: 600; }
.verdict.good { background: var(--ok); } .verdict.bad { background: var(--bad); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 16px; }
figure { margin: 0; background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
         padding: 8px; }
figure svg { display: block; width: 100%; height: auto; }
section > figure { max-width: 760px; }
.grid > figure { max-width: none; }
[class^="state-"] { white-space: nowrap; }
figcaption { color: var(--muted); font-size: 0.9em; padding: 4px 2px 0; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: 0.92em; margin: 0.3em 0 1em; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid var(--line);
         vertical-align: top; overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td:first-child { white-space: nowrap; }
td.key { font-weight: 600; white-space: nowrap; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size: 0.92em; overflow-wrap: anywhere; }
.state-applied, .state-already-set { color: var(--ok); }
.state-not-needed { color: var(--muted); }
.state-off { color: var(--warn); }
.state-impossible { color: var(--bad); font-weight: 700; }
.note { color: var(--muted); }
p.headline { font-size: 1.15em; font-weight: 600; margin: 0.6em 0 0.3em; }
p.headline.good { color: var(--ok); } p.headline.bad { color: var(--bad); }
p.warn { color: var(--warn); }
.culprit { border-left: 4px solid var(--bad); padding: 4px 10px; margin: 0 0 1em;
           background: var(--panel); }
ul { padding-left: 1.2em; }
footer { color: var(--muted); font-size: 0.85em; margin: 2em 0 1em; }
@media (max-width: 600px) { body { font-size: 14px; } main { padding: 10px; }
  .grid { grid-template-columns: 1fr; }
  figure svg text { font-size: 19px; } }
"""


class Html(str):
    """A fragment of markup this package built; `escape` leaves it as it is."""


def escape(value):
    """`value` as page text: `Html` as it is, anything else through `html.escape` (quotes too).

    Arguments:
        value: any object; None gives an empty string.

    Example:
    >>> escape('"><img src=x onerror=alert(1)>')
    '&quot;&gt;&lt;img src=x onerror=alert(1)&gt;'
    """
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def join(parts):
    """Escaped parts concatenated into one `Html` fragment."""
    return Html("".join(escape(part) for part in parts))


def tag(name, content="", **attributes):
    """One element, `<name attr="...">content</name>`, every attribute value and text escaped.

    Arguments:
        name: the element name (a constant in this package, never user text).
        content: text or `Html`, or a list of them.
        attributes: attribute values; `class_` gives `class`.

    Example:
    >>> tag("td", "<b>", class_="num")
    '<td class="num">&lt;b&gt;</td>'
    """
    if isinstance(content, (list, tuple)):
        content = join(content)
    attrs = "".join(f' {key.rstrip("_")}="{escape(value)}"' for key, value in attributes.items()
                    if value is not None)
    return Html(f"<{name}{attrs}>{escape(content)}</{name}>")


def prose(text):
    """A sentence as page text, with each `quoted` name set as code instead of showing its
    backticks (the terminal's convention for a command or a name).

    Example:
    >>> prose("run `twinrun lint <x>` first")
    'run <code>twinrun lint &lt;x&gt;</code> first'
    """
    if isinstance(text, Html):
        return text
    parts = str("" if text is None else text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave the text as it is
        return escape(text)
    return join([tag("code", part) if i % 2 else part for i, part in enumerate(parts)])


def section(title, *content):
    return Html(tag("section", [tag("h2", title), *content]))


def paragraph(*content, class_=None):
    return tag("p", list(content), class_=class_)


def figure(svg, caption=None):
    """An inline SVG plot with its caption (the SVG is `Html` from `twinrun.report.html.svg`)."""
    parts = [svg] + ([tag("figcaption", caption)] if caption else [])
    return tag("figure", parts)


def table(columns, rows, numeric=()):
    """A table; `numeric` names the columns aligned right. Cells are text or `Html`."""
    head = tag("tr", [tag("th", column, class_="num" if column in numeric else None)
                      for column in columns])
    body = [tag("tr", [tag("td", cell_text(cell), class_="num" if column in numeric else None)
                       for column, cell in zip(columns, row)]) for row in rows]
    return tag("div", tag("table", [tag("thead", head), tag("tbody", body)]), class_="scroll")


def pairs(rows):
    """A two-column table of (name, value), leaving out empty values."""
    body = [tag("tr", [tag("td", name, class_="key"), tag("td", cell_text(value))])
            for name, value in rows if value not in (None, "", [], {})]
    if not body:
        return Html("")
    return tag("div", tag("table", tag("tbody", body)), class_="scroll")


def cell_text(value):
    """How a value reads in a table cell: numbers to 6 significant digits, lists as JSON."""
    if isinstance(value, Html):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return number(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def page(title, subtitle, *sections):
    """The whole document: one file, inline style, no scripts, nothing fetched.

    Arguments:
        title: the page's heading and <title> (escaped).
        subtitle: a line under the heading (text or `Html`).
        sections: `Html` fragments, in order.

    Example:
    >>> text = page("<script>", "sub", section("A", paragraph("b")))
    >>> "&lt;script&gt;" in text and "<script>" not in text
    True
    """
    head = ('<meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">'
            '<meta name="referrer" content="no-referrer">'
            f"{tag('title', title)}<style>{STYLE}</style>")
    body = tag("main", [tag("h1", title), paragraph(subtitle, class_="sub"), *sections,
                        tag("footer", "Made by twinrun report; a single file that works offline.")])
    return Html(f"<!DOCTYPE html>\n<html lang=\"en\"><head>{head}</head><body>{body}</body></html>\n")
