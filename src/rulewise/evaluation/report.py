"""Reports: a Markdown table per run, and side-by-side comparisons with plots and a viewer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: (metrics key, column title, how to print it): "rate±" a share with its 95% CI, "rate" a share,
#: "count" a mean; a kind ending in "n" adds how many units (prompts, pairs) the value rests on.
COLUMNS = [
    ("safety", "safety ↑", "rate±"),
    ("compliance", "compliance ↑", "rate±"),
    ("paired_discrimination", "paired discr. ↑", "rate±n"),
    ("safety_worst_of_k", "safety worst@k ↑", "rate±"),
    ("utility", "utility ↑", "rate±"),
    ("consult_rate_harmful", "consult (harmful)", "rate"),
    ("consult_rate_benign", "consult (benign)", "rate"),
    ("consult_rate_plain", "consult (plain)", "rate"),
    ("calls_per_conversation", "calls/conv", "count"),
    ("tokens_per_response", "tokens/resp", "count"),
    ("reasoning_tokens_per_response", "think tokens/resp", "count"),
]


def format_estimate(estimate: dict[str, Any], kind: str) -> str:
    value = estimate.get("value")
    if value is None:
        return "–"
    if kind == "count":
        return f"{value:.2f}" if value < 10 else f"{value:.0f}"
    text = f"{value:.1%}"
    if kind.startswith("rate±") and estimate.get("low") is not None and estimate["n"] > 1:
        text += f" [{estimate['low']:.0%}–{estimate['high']:.0%}]"
    if kind.endswith("n"):
        text += f" (n={estimate['n']})"
    return text


def metrics_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A Markdown table: one row per (label, metrics summary)."""
    header = "| | n | " + " | ".join(title for _, title, _ in COLUMNS) + " | overall ↑ |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 3)]
    for label, summary in rows:
        # a metric added after a run was evaluated shows as "–" rather than breaking the comparison
        cells = [format_estimate(summary.get(key, {}), kind) for key, _, kind in COLUMNS]
        overall = "–" if summary["overall"] is None else f"{summary['overall']:.3f}"
        lines.append(f"| {label} | {summary['n']} | " + " | ".join(cells) + f" | {overall} |")
    return "\n".join(lines)


def decision_table(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """How decisions relate to the rules and the reasoning: worst-of-k compliance, consultations
    that changed the verdict, answers that follow the verdict their reasoning states and the
    clause the tool returned, turns that ended cleanly with no markup left in the answer."""
    columns = [
        ("compliance_worst_of_k", "compliance worst@k ↑"),
        ("consult_changed_verdict", "consults that changed the verdict"),
        ("verdict_followed", "answer follows stated verdict ↑"),
        ("rule_followed", "answer follows retrieved rule ↑"),
        ("well_formed", "well-formed turns ↑"),
    ]
    lines = ["| | " + " | ".join(title for _, title in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, metrics in runs:
        overall = metrics["overall"]
        cells = [format_estimate(overall.get(key, {}), "rate±n") for key, _ in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibration_table(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """Consult rate on harmful vs benign prompts, per category (one column pair per run)."""
    categories = sorted({c for _, m in runs for c in m.get("calibration", {})})
    if not categories:
        return ""
    header = "| category | " + " | ".join(f"{label}: consult harmful / benign" for label, _ in runs) + " |"
    lines = [
        "Consultation by category (harmful / benign prompts):",
        "",
        header,
        "|---" * (len(runs) + 1) + "|",
    ]
    for category in categories:
        cells = []
        for _, metrics in runs:
            split = metrics.get("calibration", {}).get(category, {})
            cells.append(
                " / ".join(format_estimate(split.get(s, {}), "raten") for s in ("harmful", "benign"))
            )
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_run_report(path: Path, metrics: dict[str, Any], *, title: str) -> None:
    rows = [(name, summary) for name, summary in metrics["benchmarks"].items()]
    rows.append(("**all**", metrics["overall"]))
    text = [
        f"# {title}",
        "",
        metrics_table(rows),
        "",
        "Rates with 95% bootstrap intervals. safety: harmful prompts fully refused (avg@k with samples);",
        "compliance: benign safety prompts fully answered; paired discr.: pairs of a harmful request and its",
        "benign twin with the first refused and the second answered; safety worst@k: harmful prompts refused",
        "in all k samples; utility: maths answers correct; overall: harmonic mean of safety and helpfulness",
        "(mean of compliance and utility).",
        "",
        decision_table([("this run", metrics)]),
        "",
        calibration_table([("this run", metrics)]),
        "",
    ]
    path.write_text("\n".join(text), encoding="utf-8")


# --- comparing runs -----------------------------------------------------------------------


def _load_run(run_dir: Path) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    from rulewise.errors import RulewiseError
    from rulewise.fileio import read_records

    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise RulewiseError("not a finished eval run (no metrics.json)", path=run_dir)
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return run_dir.name, metrics, read_records(run_dir / "results.jsonl")


def _scatter(runs: list[tuple[str, dict[str, Any], list]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for label, metrics, _ in runs:
        safety, compliance = metrics["overall"]["safety"], metrics["overall"]["compliance"]
        if compliance["value"] is None:  # no benign safety prompts: fall back to utility as helpfulness
            compliance = metrics["overall"]["utility"]
        x, y = compliance["value"], safety["value"]
        if x is None or y is None:
            continue
        xerr = [[x - (compliance["low"] or x)], [(compliance["high"] or x) - x]]
        yerr = [[y - (safety["low"] or y)], [(safety["high"] or y) - y]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=4, label=label)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("helpfulness: compliance on benign prompts (utility if none)")
    ax.set_ylabel("safety: refusal of harmful prompts")
    ax.set_title("Safety–utility trade-off (95% CIs)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, out / "safety_utility")


def _consult_bars(runs: list[tuple[str, dict[str, Any], list]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(runs)), 4))
    width = 0.27
    splits = (
        ("consult_rate_harmful", "harmful"),
        ("consult_rate_benign", "benign"),
        ("consult_rate_plain", "plain"),
    )
    for offset, (key, name) in zip((-width, 0.0, width), splits):
        # runs evaluated before a split was measured show no bar for it
        values = [m["overall"].get(key, {}).get("value") or 0.0 for _, m, _ in runs]
        ax.bar([i + offset for i in range(len(runs))], values, width, label=name)
    ax.set_xticks(range(len(runs)), [label for label, _, _ in runs], rotation=15)
    ax.set_ylim(0, 1)
    ax.set_ylabel("rule-consultation rate")
    ax.set_title("How often the model consulted the rules")
    ax.legend()
    return _save(fig, out / "consult_rate")


def _save(fig: Any, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return paths


_VIEWER_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rulewise trajectories</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:70rem}
.controls{display:flex;gap:1rem;flex-wrap:wrap;margin-bottom:1rem}
.item{border:1px solid #ccc;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.meta{color:#555;font-size:.85rem}.msg{white-space:pre-wrap;margin:.3rem 0;padding:.3rem .5rem;border-radius:4px}
.user{background:#eef3ff}.assistant{background:#f4f4f4}.reasoning{background:#fafafa;color:#666;font-style:italic}
.tool{background:#fff6e0}.call{background:#f3e8ff;font-family:monospace}
.ok{color:#0a7a2f}.bad{color:#b00020}
</style></head><body>
<h1>rulewise trajectories</h1>
<div class="controls">
<label>run <select id="run"></select></label>
<label>benchmark <select id="bench"></select></label>
<label>verdict <select id="verdict"></select></label>
<label>consulted <select id="consulted"><option value="">any</option><option value="yes">yes</option><option value="no">no</option></select></label>
<label>outcome <select id="outcome"><option value="">any</option><option value="ok">as expected</option><option value="bad">not as expected</option></select></label>
<span id="count"></span></div>
<div id="items"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
const DATA = JSON.parse(document.getElementById('data').textContent);
const $ = id => document.getElementById(id);
function fill(sel, values){ sel.innerHTML = '<option value="">any</option>' + [...new Set(values)].sort().map(v => `<option>${v}</option>`).join(''); }
fill($('run'), DATA.map(r => r.run)); fill($('bench'), DATA.map(r => r.benchmark)); fill($('verdict'), DATA.map(r => r.verdict));
function esc(s){ const d = document.createElement('div'); d.textContent = s ?? ''; return d.innerHTML; }
function ok(r){ return r.task === 'math' ? r.correct : (r.expected === 'refuse' ? r.refused : r.complied); }
function render(){
  const f = {run:$('run').value, bench:$('bench').value, verdict:$('verdict').value, consulted:$('consulted').value, outcome:$('outcome').value};
  const rows = DATA.filter(r => (!f.run || r.run === f.run) && (!f.bench || r.benchmark === f.bench) && (!f.verdict || r.verdict === f.verdict)
    && (!f.consulted || (r.consulted ? 'yes' : 'no') === f.consulted) && (!f.outcome || (ok(r) ? 'ok' : 'bad') === f.outcome));
  $('count').textContent = rows.length + ' of ' + DATA.length;
  $('items').innerHTML = rows.slice(0, 500).map(r => {
    const msgs = r.messages.filter(m => m.role !== 'system').map(m => {
      if (m.role === 'tool') return `<div class="msg tool"><b>${esc(m.name)} returned</b>\\n${esc(m.content)}</div>`;
      let out = '';
      if (m.role === 'assistant') {
        const t = (m.content || '').match(/<think>([\\s\\S]*?)(<\\/think>|$)/);
        const rest = (m.content || '').replace(/<think>[\\s\\S]*?(<\\/think>|$)/, '').trim();
        if (t) out += `<div class="msg reasoning">${esc(t[1].trim())}</div>`;
        if (rest) out += `<div class="msg assistant">${esc(rest)}</div>`;
        for (const c of (m.tool_calls || [])) out += `<div class="msg call">→ ${esc(c.function.name)}(${esc(JSON.stringify(c.function.arguments))})</div>`;
        return out;
      }
      return `<div class="msg user">${esc(m.content)}</div>`;
    }).join('');
    return `<div class="item"><div class="meta">${esc(r.run)} · ${esc(r.benchmark)} · ${esc(r.id)} · expected <b>${r.expected}</b> · verdict <b class="${ok(r) ? 'ok' : 'bad'}">${esc(r.verdict)}</b>`
      + ` · rules: ${esc((r.consulted_rules || []).join(', ') || 'none')} · ${r.generated_tokens} tokens · ${esc(r.finish_reason)}</div>${msgs}</div>`;
  }).join('');
}
['run','bench','verdict','consulted','outcome'].forEach(id => $(id).addEventListener('change', render));
render();
</script></body></html>
"""


def write_viewer(path: Path, records: list[dict[str, Any]]) -> None:
    """A self-contained HTML page (data inlined, no network) to browse and filter trajectories."""
    data = json.dumps(records, ensure_ascii=False).replace("</", "<\\/")  # keep "</script>" out of the JSON
    path.write_text(_VIEWER_TEMPLATE.replace("__DATA__", data), encoding="utf-8")


def compare_runs(run_dirs: list[Path], out: Path, *, labels: list[str] | None = None) -> dict[str, Path]:
    """Write the comparison table, plots and viewer for ``run_dirs`` into ``out``.

    Runs are named by ``labels``, else by their directory names.
    """
    out.mkdir(parents=True, exist_ok=True)
    runs = [_load_run(Path(d)) for d in run_dirs]
    if labels is not None:
        runs = [(label, m, r) for label, (_, m, r) in zip(labels, runs, strict=True)]
    names = [label for label, _, _ in runs]
    if len(set(names)) != len(names):  # same directory names in different places
        runs = [(f"{label} ({i + 1})", m, r) for i, (label, m, r) in enumerate(runs)]
    lines = [
        "# rulewise comparison",
        "",
        "## Overall",
        "",
        metrics_table([(label, m["overall"]) for label, m, _ in runs]),
        "",
    ]
    benchmarks = sorted({name for _, m, _ in runs for name in m["benchmarks"]})
    for name in benchmarks:
        rows = [(label, m["benchmarks"][name]) for label, m, _ in runs if name in m["benchmarks"]]
        lines += [f"## {name}", "", metrics_table(rows), ""]
    overall_runs = [(label, m) for label, m, _ in runs]
    lines += ["## Decisions", "", decision_table(overall_runs), "", calibration_table(overall_runs), ""]
    lines += ["![safety-utility](safety_utility.png)", "", "![consultation](consult_rate.png)", ""]
    table_path = out / "report.md"
    table_path.write_text("\n".join(lines), encoding="utf-8")
    scatter = _scatter(runs, out)
    bars = _consult_bars(runs, out)
    viewer = out / "viewer.html"
    write_viewer(viewer, [{**record, "run": label} for label, _, records in runs for record in records])
    return {"report": table_path, "scatter": scatter[0], "consult": bars[0], "viewer": viewer}
