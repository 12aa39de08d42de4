"""Results in a notebook: a one-line repr and an HTML card that cannot restyle the page around it.

Material: real scikit-learn searches on wine (RandomizedSearchCV over an SVC, three seeds), read
back through hptrack's analyses; the card is checked against the result's own numbers.
"""

import html
import re

import pytest
import scipy.stats
from sklearn.datasets import load_wine
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import hptrack
import hptrack.sklearn
from hptrack import analysis
from hptrack.analysis.notebook import REPR_WIDTH


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("nb"))
    X, y = load_wine(return_X_y=True)
    space = {"svc__C": scipy.stats.loguniform(1e-2, 1e2), "svc__gamma": scipy.stats.loguniform(1e-4, 1e0)}
    for seed in (0, 1, 2):
        rs = RandomizedSearchCV(make_pipeline(StandardScaler(), SVC()), space, n_iter=10, random_state=seed,
                                cv=StratifiedKFold(4, shuffle=True, random_state=0))
        hptrack.sklearn.track(rs, name=f"svc-{seed}", store=store, task="wine").fit(X, y)
    return store


@pytest.fixture(scope="module")
def results(wine):
    store = wine
    return {
        "diagnosis": analysis.diagnose("svc-0", store=store, n_boot=200),
        "comparison": analysis.compare(["svc-0", "svc-1", "svc-2"], store=store, n_boot=100),
        "sensitivity": analysis.analyse("svc-0", store=store, n_trees=16),
        "stability": analysis.stability("svc-0", store=store, n_trees=16),
        "report": hptrack.report(store=store, quiet=True, progress=False),
    }


def _no_page_styling(card):
    """Nothing in a card can reach the host page: no style sheet, script, link or frame of its own."""
    assert not re.search(r"<\s*(style|script|link|iframe|meta)\b", card, re.I)
    assert not re.search(r"\bclass\s*=|\bid\s*=", card)        # nothing a host rule could target


def test_reprs_are_one_short_line_and_cards_state_the_results(results):
    res = results
    for kind, r in res.items():
        text = repr(r)
        assert "\n" not in text and len(text) <= REPR_WIDTH, (kind, text)
        card = r._repr_html_()
        _no_page_styling(card)
        assert card.startswith("<div style=") and card.endswith("</div>")
    d = res["diagnosis"]
    card = html.unescape(res["diagnosis"]._repr_html_())
    assert f"trial {d.best_trial_number}: {d.best_value:.4g}" in card and "svc-0" in repr(d)
    assert f"{d.best_cv:.4g}" in card
    c = res["comparison"]
    for strategy in c.summary["strategy"]:
        assert strategy in html.unescape(c._repr_html_())
    assert c.verdict in html.unescape(c._repr_html_())
    s = res["sensitivity"]
    top = s.importance["param"][0]
    assert f"top param {top};" in repr(s)
    assert html.unescape(s._repr_html_()).count("<tr>") >= s.importance.height  # every param is a row
    rep = res["report"]
    card = html.unescape(rep._repr_html_())
    for sr in rep.searches:
        assert sr.name in card and f"{sr.best['value']:.4g}" in card
    assert rep.snapshot in card
    assert repr(rep).startswith("<Report 3 searches")


def test_show_puts_the_whole_report_in_an_isolated_frame(results):
    rep = results["report"]
    shown = rep.show()     # what a notebook displays as the last expression of a cell
    frame = shown._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and frame.count("<iframe") == 1
    page = html.unescape(re.match(r'<iframe srcdoc="([^"]*)"', frame).group(1))
    from hptrack.analysis.report.html import render
    assert page == render(rep)           # the report itself, not a summary of it
    # every quote and angle bracket of the page is escaped: the page cannot end the attribute
    assert '"' not in re.match(r'<iframe srcdoc="([^"]*)"', frame).group(1)
    assert len(repr(shown)) < REPR_WIDTH


def test_repr_of_a_result_with_nothing_computed_is_still_short(tmp_path):
    with hptrack.search("empty", store=tmp_path) as s:
        with s.trial({"x": 1}) as t:
            t.complete(0.5)
    d = analysis.diagnose("empty", store=tmp_path)
    assert len(repr(d)) <= REPR_WIDTH and "not computed" in html.unescape(d._repr_html_())
    _no_page_styling(d._repr_html_())


HOST = """<!DOCTYPE html><html><head><style>
body{font:15px Georgia,serif;color:rgb(10,20,30);background:rgb(250,250,240)} p{margin:7px 0;color:rgb(90,0,0)}
table{border:3px solid rgb(0,128,0)} td{padding:5px} div{letter-spacing:1px}
</style></head><body><p id="host">a notebook's own text</p><table id="host-table"><tr><td>cell</td></tr></table>
<div id="outputs"></div></body></html>"""
STYLES = ("font-family", "font-size", "color", "background-color", "margin-top", "border-top-width",
          "letter-spacing", "padding-top")


def test_cards_and_the_report_frame_in_a_host_page_in_chromium(results, tmp_path):
    """In a real browser, a page styled like a notebook: inserting every card and the report's
    frame changes no computed style of the host's elements; the report inside the frame draws
    every plot."""
    from browser import opened

    res = results
    outputs = [r._repr_html_() for r in res.values()] + [res["report"].show(height=700)._repr_html_()]
    host = tmp_path / "host.html"
    host.write_text(HOST)
    probe = ("sel => [...document.querySelectorAll(sel)].map(e => { const c = getComputedStyle(e); "
             f"return {list(STYLES)!r}.map(k => c.getPropertyValue(k)); }})")
    with opened(host, report=False) as page:
        before = {sel: page.evaluate(probe, sel) for sel in ("body", "#host", "#host-table", "#host-table td")}
        page.evaluate("html => { document.getElementById('outputs').innerHTML = html; }", "".join(outputs))
        after = {sel: page.evaluate(probe, sel) for sel in before}
        assert after == before
        frame = page.frame_locator("#outputs iframe")
        frame.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        inner = page.frames[1]
        inner.evaluate("window.hptrack.ready.then(() => window.hptrack.drawAll())")
        n_plots = inner.evaluate("document.querySelectorAll('figure .plot').length")
        assert n_plots > 5 and inner.evaluate("document.querySelectorAll('.js-plotly-plot').length") == n_plots
        assert page.errors == [] and page.requests == []


def test_a_real_jupyter_kernel_displays_the_results_inline(wine, tmp_path):
    """A notebook run by a real IPython kernel (nbclient): the cells' outputs are the cards, the
    short reprs and, for report.show(), the report's frame."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat (dev extra) writes the notebook")
    nbclient = pytest.importorskip("nbclient", reason="nbclient and ipykernel (dev extra) run it")
    cells = ["import hptrack\nfrom hptrack import analysis\n"
             f"rep = hptrack.report(store={wine!r}, quiet=True, progress=False)",
             "rep", "rep.show(height=600)", f"analysis.diagnose('svc-0', store={wine!r}, n_boot=100)"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                            ).execute()
    outs = [[o for o in c.outputs if o["output_type"] == "execute_result"] for c in nb.cells]
    assert [len(o) for o in outs] == [0, 1, 1, 1], [c.outputs for c in nb.cells]
    report, frame, diagnosis = (o[0]["data"] for o in outs[1:])
    assert report["text/plain"].startswith("<Report 3 searches") and "\n" not in report["text/plain"]
    assert report["text/html"].startswith("<div style=") and "svc-0" in report["text/html"]
    assert frame["text/html"].startswith("<iframe srcdoc=") and "hp-plotly" in frame["text/html"]
    assert len(frame["text/plain"]) < REPR_WIDTH
    assert diagnosis["text/html"].startswith("<div style=") and "svc-0" in diagnosis["text/plain"]
    for data in (report, frame, diagnosis):
        assert len(data["text/plain"]) <= REPR_WIDTH
