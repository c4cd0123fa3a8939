"""`costgate report --html`: the cost report as one self-contained HTML page of plotly charts.

The page needs no network to be read: plotly.js is inlined once in the head, every figure is drawn
from inline JSON. The figures plot floats, but every amount a reader sees (hover text, header, table)
is the ledger's exact Decimal, formatted by `usd`.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]  # plotly ships no type information
import plotly.io as pio  # type: ignore[import-untyped]
from playwright.sync_api import Page
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

from costgate.accounting.ports import LedgerStore
from costgate.accounting.report import CostReport, CostReportRequest, GroupBy, StrategyTotals, build_report
from costgate.money import format_usd
from costgate.pricing.cost import Strategy
from costgate_local.tools.browser import headless_chromium, offline

STRATEGY_LABELS = {
    Strategy.PROMPT_CACHE: "Prompt caching",
    Strategy.BATCH: "Batch API",
    Strategy.ROUTING: "Model routing",
    Strategy.ANSWER_CACHE: "Answer cache",
}
CHART_TITLES = (
    "Daily cost by feature",
    "Daily cost by model",
    "Savings by strategy",
    "Cache hit rates by feature",
    "Budget rejections per day by tenant",
)
NO_DATA = "No data for this period"
# Drawn in the page's browser: how many plotly figures have an SVG, for waiting on the page to finish.
_DRAWN_CHARTS_JS = "[...document.querySelectorAll('.js-plotly-plot')].filter(d => d.querySelector('.main-svg')).length"
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_ONE_DAY_MS = 86_400_000
# On a date axis a bar is as wide as the gap to its neighbour unless told: keep it within its day.
_BAR_WIDTH_MS = _ONE_DAY_MS * 0.8


@dataclass(frozen=True)
class DailyStack[N: (int, Decimal)]:
    """One value per UTC day of the period (every day, zeros included) for each series, largest total first."""

    days: tuple[date, ...]
    series: dict[str, tuple[N, ...]]


@dataclass(frozen=True)
class CacheRates:
    """One feature's use of the two caches; a rate is None when there is nothing to divide by.

    Prompt cache: the share of prompt tokens (input, cache writes and cache reads) read from Claude's
    prompt cache. Answer cache: the share of requests costgate answered from its own answer cache.
    """

    feature: str
    requests: int
    answered_from_cache: int
    prompt_tokens: int
    cache_read_tokens: int

    @property
    def prompt_cache(self) -> Decimal | None:
        return Decimal(self.cache_read_tokens) / self.prompt_tokens if self.prompt_tokens else None

    @property
    def answer_cache(self) -> Decimal | None:
        return Decimal(self.answered_from_cache) / self.requests if self.requests else None


@dataclass(frozen=True)
class ReportPage:
    """Everything the page shows, exact, for one period (and tenant, if the request names one)."""

    report: CostReport  # grouped by feature: totals, strategies, cache rates, rejections
    cost_by_feature: DailyStack[Decimal]
    cost_by_model: DailyStack[Decimal]
    rejections_by_tenant: DailyStack[int]

    @property
    def request(self) -> CostReportRequest:
        return self.report.request

    @property
    def strategies(self) -> dict[Strategy, StrategyTotals]:
        return self.report.total.strategies

    @property
    def cache_rates(self) -> list[CacheRates]:
        """Per feature, largest cost first (the report's order)."""
        return [
            CacheRates(
                feature=row.key,
                requests=row.requests,
                answered_from_cache=row.strategies[Strategy.ANSWER_CACHE].requests,
                prompt_tokens=sum(
                    row.tokens[name]
                    for name in ("input_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens")
                ),
                cache_read_tokens=row.tokens["cache_read_tokens"],
            )
            for row in self.report.rows
        ]


def write_html_report(store: LedgerStore, request: CostReportRequest, path: Path) -> None:
    """Write the report page for the request's period and tenant to `path`, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html_report(gather_report_page(store, request)), encoding="utf-8")


def gather_report_page(store: LedgerStore, request: CostReportRequest) -> ReportPage:
    """Read the period's rollups and rejection counters, keeping only the request's tenant if it names one."""
    tenant = request.tenant
    rollups = [r for r in store.rollups(request.first, request.last) if tenant is None or r.tenant == tenant]
    rejections = [r for r in store.rejections(request.first, request.last) if tenant is None or r.tenant == tenant]
    return ReportPage(
        # build_report reads the rollups once more: the page's totals are then exactly `costgate report`'s.
        report=build_report(store, replace(request, group_by=GroupBy.FEATURE)),
        cost_by_feature=daily_stack(request, ((r.day, r.feature, r.cost_usd) for r in rollups), Decimal(0)),
        cost_by_model=daily_stack(request, ((r.day, r.model, r.cost_usd) for r in rollups), Decimal(0)),
        rejections_by_tenant=daily_stack(request, ((r.day, r.tenant, r.count) for r in rejections), 0),
    )


def daily_stack[N: (int, Decimal)](
    request: CostReportRequest, points: Iterable[tuple[date, str, N]], zero: N
) -> DailyStack[N]:
    """Sum (day, series, value) points into one value per day of the period and series."""
    days = tuple(request.first + timedelta(days=n) for n in range((request.last - request.first).days + 1))
    column = {day: i for i, day in enumerate(days)}
    values: dict[str, list[N]] = {}
    for day, name, value in points:
        values.setdefault(name, [zero] * len(days))[column[day]] += value
    order = sorted(values, key=lambda name: (-sum(values[name], zero), name))
    return DailyStack(days=days, series={name: tuple(values[name]) for name in order})


def usd(amount: Decimal) -> str:
    """An exact amount for a reader: `$1,234.50`, `$0.0000055`, `-$0.20` (at least two decimals, never rounded)."""
    whole, _, fraction = format_usd(abs(amount)).partition(".")
    return f"{'-' if amount < 0 else ''}${int(whole):,}.{fraction.ljust(2, '0')}"


def percent(fraction: Decimal | None) -> str:
    return "—" if fraction is None else f"{fraction:.1%}"


# --- the page --------------------------------------------------------------------------------------------


def render_html_report(page: ReportPage) -> str:
    figures = [
        _daily_cost_figure(CHART_TITLES[0], page.cost_by_feature, "Feature"),
        _daily_cost_figure(CHART_TITLES[1], page.cost_by_model, "Model"),
        _strategy_figure(CHART_TITLES[2], page.strategies),
        _cache_figure(CHART_TITLES[3], page.cache_rates),
        _rejections_figure(CHART_TITLES[4], page.rejections_by_tenant),
    ]
    captions = [
        "What each feature (the x-costgate-feature tag) cost per UTC day, in USD.",
        "What each Claude model cost per UTC day, in USD.",
        "For the requests each strategy changed: what they would have cost without it, and what they cost.",
        "Prompt cache: share of prompt tokens read from Claude's prompt cache. "
        "Answer cache: share of requests answered from costgate's cache without calling Claude.",
        "Requests refused (HTTP 429) because a budget was exhausted.",
    ]
    charts = "\n".join(
        f'<section class="chart">{_figure_div(figure, f"chart-{n}")}<p class="caption">{escape(caption)}</p></section>'
        for n, (figure, caption) in enumerate(zip(figures, captions, strict=True), start=1)
    )
    request = page.request
    period = f"{request.first.isoformat()} to {request.last.isoformat()}"
    return _PAGE.format(
        title=escape(f"Claude API cost report, {period}"),
        plotly_js=get_plotlyjs(),
        style=_STYLE,
        period=escape(period),
        scope=escape(f"tenant {request.tenant}" if request.tenant else "all tenants"),
        totals=_totals(page.report),
        charts=charts,
        strategy_table=_strategy_table(page.report),
    )


def _totals(report: CostReport) -> str:
    total = report.total
    figures = [
        ("Requests", f"{total.requests:,}"),
        ("Cost", usd(total.cost_usd)),
        ("Without optimisation (baseline)", usd(total.baseline_cost_usd)),
        ("Saved", f"{usd(total.savings_usd)} ({percent(report.total.overall.saving_fraction)})"),
        ("Budget rejections", f"{report.budget_rejections:,}"),
    ]
    return "\n".join(
        f'<div class="figure"><dt>{escape(name)}</dt><dd>{escape(value)}</dd></div>' for name, value in figures
    )


def _strategy_table(report: CostReport) -> str:
    def row(name: str, totals: StrategyTotals, css: str = "") -> str:
        cells = [
            f"{totals.requests:,}",
            usd(totals.baseline_cost_usd),
            usd(totals.cost_usd),
            usd(totals.savings_usd),
            percent(totals.saving_fraction),
        ]
        numbers = "".join(f'<td class="num">{escape(cell)}</td>' for cell in cells)
        return f'<tr{css}><th scope="row">{escape(name)}</th>{numbers}</tr>'

    body = "\n".join(row(STRATEGY_LABELS[s], totals) for s, totals in report.total.strategies.items())
    return _TABLE.format(body=body, total=row("All requests", report.total.overall, ' class="total"'))


def _figure_div(figure: go.Figure, div_id: str) -> str:
    return str(
        pio.to_html(
            figure,
            include_plotlyjs=False,
            full_html=False,
            div_id=div_id,
            config=_PLOTLY_CONFIG,
            default_height="440px",
        )
    )


# --- the figures -----------------------------------------------------------------------------------------


def _figure(title: str, **layout: Any) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 18}},
        template="plotly_white",
        font={"family": _FONT, "size": 13},
        margin={"l": 70, "r": 20, "t": 60, "b": 60},
        hoverlabel={"font": {"family": _FONT}},
        **layout,
    )
    return figure


def _no_data(figure: go.Figure) -> go.Figure:
    figure.add_annotation(
        text=NO_DATA, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16, "color": "#666"}
    )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.update_layout(height=220, showlegend=False)
    return figure


def _days_axis(stack: DailyStack[Any]) -> dict[str, Any]:
    """A date axis spanning the whole period, one tick a day when that stays legible."""
    half_day = timedelta(hours=12)
    axis: dict[str, Any] = {
        "title": {"text": "UTC day"},
        "type": "date",
        "range": [
            (stack.days[0] - half_day).isoformat(),
            (stack.days[-1] + half_day).isoformat(),
        ],
        "tickformat": "%b %-d",
        "hoverformat": "%Y-%m-%d (UTC)",
    }
    if len(stack.days) <= 16:
        axis["dtick"] = _ONE_DAY_MS
    return axis


def _daily_cost_figure(title: str, stack: DailyStack[Decimal], legend: str) -> go.Figure:
    figure = _figure(
        title,
        barmode="stack",
        hovermode="x unified",
        legend={"title": {"text": legend}},
        xaxis=_days_axis(stack),
        yaxis={"title": {"text": "Cost (USD)"}, "tickprefix": "$", "rangemode": "tozero"},
    )
    if not stack.series:
        return _no_data(figure)
    for name, values in stack.series.items():
        # Days without cost are left out, so a day's hover lists only what was spent.
        points = [(day, value) for day, value in zip(stack.days, values, strict=True) if value]
        figure.add_bar(
            name=name,
            x=[day.isoformat() for day, _ in points],
            y=[float(value) for _, value in points],
            customdata=[usd(value) for _, value in points],
            hovertemplate="%{customdata}",
            width=_BAR_WIDTH_MS,
        )
    return figure


def _rejections_figure(title: str, stack: DailyStack[int]) -> go.Figure:
    figure = _figure(
        title,
        barmode="stack",
        hovermode="x unified",
        legend={"title": {"text": "Tenant"}},
        xaxis=_days_axis(stack),
        yaxis={"title": {"text": "Rejected requests"}, "rangemode": "tozero", "tickformat": ",d"},
    )
    if not stack.series:
        return _no_data(figure)
    if max(sum(day) for day in zip(*stack.series.values(), strict=True)) <= 10:
        figure.update_yaxes(dtick=1)  # no half requests on the axis
    for name, values in stack.series.items():
        points = [(day, value) for day, value in zip(stack.days, values, strict=True) if value]
        figure.add_bar(
            name=name,
            x=[day.isoformat() for day, _ in points],
            y=[value for _, value in points],
            hovertemplate="%{y:,d} rejected",
            width=_BAR_WIDTH_MS,
        )
    return figure


def _strategy_figure(title: str, strategies: dict[Strategy, StrategyTotals]) -> go.Figure:
    figure = _figure(
        title,
        barmode="group",
        legend={"title": {"text": "Requests changed"}},
        xaxis={"title": {"text": "Strategy"}},
        yaxis={"title": {"text": "Cost (USD)"}, "tickprefix": "$", "rangemode": "tozero"},
    )
    used = {strategy: totals for strategy, totals in strategies.items() if totals.requests}
    if not used:
        return _no_data(figure)
    labels = [STRATEGY_LABELS[strategy] for strategy in used]
    notes = [
        f"{totals.requests:,} requests, saving {usd(totals.savings_usd)} ({percent(totals.saving_fraction)})"
        for totals in used.values()
    ]
    for name, amounts in (
        ("Without the strategy (baseline)", [totals.baseline_cost_usd for totals in used.values()]),
        ("Actual cost", [totals.cost_usd for totals in used.values()]),
    ):
        figure.add_bar(
            name=name,
            x=labels,
            y=[float(amount) for amount in amounts],
            customdata=[[usd(amount), note] for amount, note in zip(amounts, notes, strict=True)],
            hovertemplate="<b>%{x}</b><br>%{fullData.name}: %{customdata[0]}<br>%{customdata[1]}<extra></extra>",
        )
    for label, totals in zip(labels, used.values(), strict=True):
        fraction = totals.saving_fraction
        figure.add_annotation(
            x=label,
            y=float(max(totals.baseline_cost_usd, totals.cost_usd)),
            text=f"saves {percent(fraction)}"
            if fraction is None or fraction >= 0
            else f"costs {percent(-fraction)} more",
            showarrow=False,
            yshift=14,
            font={"size": 13},
        )
    return figure


def _cache_figure(title: str, rates: list[CacheRates]) -> go.Figure:
    figure = _figure(
        title,
        barmode="group",
        legend={"title": {"text": "Cache"}},
        xaxis={"title": {"text": "Feature"}, "type": "category"},
        yaxis={"title": {"text": "Hit rate"}, "ticksuffix": "%", "range": [0, 105]},
    )
    if not rates:
        return _no_data(figure)
    prompt_notes = [
        f"{r.cache_read_tokens:,} of {r.prompt_tokens:,} prompt tokens read from the cache"
        if r.prompt_tokens
        else "no prompt tokens"
        for r in rates
    ]
    answer_notes = [f"{r.answered_from_cache:,} of {r.requests:,} requests answered from the cache" for r in rates]
    for name, values, notes in (
        ("Prompt cache (tokens)", [r.prompt_cache for r in rates], prompt_notes),
        ("Answer cache (requests)", [r.answer_cache for r in rates], answer_notes),
    ):
        figure.add_bar(
            name=name,
            x=[r.feature for r in rates],
            y=[None if value is None else float(value * 100) for value in values],
            customdata=[[percent(value), note] for value, note in zip(values, notes, strict=True)],
            hovertemplate="<b>%{x}</b><br>%{fullData.name}: %{customdata[0]}<br>%{customdata[1]}<extra></extra>",
        )
    return figure


_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 0;
       color: #1f2328; background: #f6f8fa; }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { font-size: 18px; margin: 0 0 12px; }
.period { margin: 0 0 16px; color: #57606a; }
.totals { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 0; }
.figure { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 12px 16px; }
.figure dt { color: #57606a; font-size: 13px; }
.figure dd { margin: 4px 0 0; font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px; margin: 16px 0; }
.caption, .note { color: #57606a; font-size: 13px; margin: 8px 0 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 8px 12px; border-bottom: 1px solid #d0d7de; text-align: left; }
td.num, thead th.num { text-align: right; }
tr.total th, tr.total td { font-weight: 600; border-top: 2px solid #1f2328; }
footer { color: #57606a; font-size: 13px; padding-bottom: 24px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script>{plotly_js}</script>
</head>
<body>
<header>
<h1>Claude API cost report</h1>
<p class="period">{period} (UTC days), {scope}</p>
<dl class="totals">
{totals}
</dl>
</header>
<main>
{charts}
{strategy_table}
</main>
<footer>Amounts are exact US dollars from the costgate ledger, each request priced once at the rates of its
day. Baseline: what the same requests would have cost without costgate's optimisations.</footer>
</body>
</html>
"""

_TABLE = """<section class="strategies">
<h2>Savings by strategy</h2>
<table>
<thead><tr><th scope="col">Strategy</th><th scope="col" class="num">Requests changed</th>
<th scope="col" class="num">Baseline</th><th scope="col" class="num">Actual</th>
<th scope="col" class="num">Saving</th><th scope="col" class="num">Saving %</th></tr></thead>
<tbody>
{body}
{total}
</tbody>
</table>
<p class="note">A request changed by several strategies counts under each (a routed request that also read the
prompt cache counts under both), so the strategy rows do not add up to all requests.</p>
</section>"""


# --- in a browser ----------------------------------------------------------------------------------------


def wait_for_charts(page: Page, timeout_ms: float = 30_000) -> None:
    """Wait until every chart of the page has been drawn as SVG."""
    page.wait_for_function(f"{_DRAWN_CHARTS_JS} >= {len(CHART_TITLES)}", timeout=timeout_ms)


def screenshot(html: Path, png: Path, width: int = 1200) -> None:
    """A full-page PNG of a written report (for the README), drawn offline in headless Chromium."""
    with headless_chromium() as browser:
        page = browser.new_page()
        page.set_viewport_size({"width": width, "height": 900})
        refused = offline(page)
        page.goto(html.resolve().as_uri())
        wait_for_charts(page)
        if refused:
            raise RuntimeError(f"the report asked for the network: {refused}")
        png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=png, full_page=True)
