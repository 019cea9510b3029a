"""The headline table of bench/results.md: each figure next to its comparison from the same run.

Pure function over the collected results (``bench/run.py`` calls :func:`headline`); a figure
whose benchmark did not run (``--quick``, or a subset of names) is simply left out.
"""

from __future__ import annotations

from typing import Any

Row = tuple[str, str, str, str]


def _get(data: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _s(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1000:.1f} ms"
    if unit == "x":
        return f"{value:.2f}"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:.3f} s"


def headline(results: dict[str, Any]) -> list[Row]:
    """(figure, dr-engine value, comparison, comparison value) rows."""
    b = results.get("benchmarks", {})
    rows: list[Row] = []
    eng = b.get("engine", {})
    if eng:
        steps = _get(eng, "engine_prefect.steps")
        rows.append((f"overhead per step ({steps} sequential no-op steps), engine on Prefect",
                     _s(_get(eng, "engine_prefect.overhead_per_step"), "ms"), "bare Prefect flow, same no-op tasks",
                     _s(_get(eng, "bare_prefect.overhead_per_step"), "ms")))
        rows.append(("overhead per step, engine alone (no Prefect)",
                     _s(_get(eng, "engine_inline.overhead_per_step"), "ms"), "bare Prefect flow",
                     _s(_get(eng, "bare_prefect.overhead_per_step"), "ms")))
    par = b.get("parallel", {})
    for count in (50, 500):
        if f"steps_{count}" in par:
            rows.append((f"parallel efficiency, {count} independent {par['step_s']} s steps at concurrency "
                         f"{par['concurrency']} (wall / ideal, 1.00 = perfect)",
                         _s(_get(par, f"steps_{count}.engine_prefect.efficiency"), "x"), "bare Prefect flow",
                         _s(_get(par, f"steps_{count}.bare_prefect.efficiency"), "x")))
    plan = b.get("plan", {})
    sizes = plan.get("sizes", {}) if isinstance(plan, dict) else {}
    for size in sorted(sizes, key=int):
        fig = sizes[size]
        rows.append((f"validate + plan, {int(size):,} steps (in process / peak Python memory)",
                     f"{_s(fig.get('validate_plus_plan_s_median'))} / {_s(fig.get('peak_python_mib'), 'MiB')}",
                     "`dr validate` cold process (time / peak RSS)",
                     f"{_s(fig.get('cli_validate_s'))} / {_s(fig.get('cli_validate_peak_rss_mib'), 'MiB')}"))
    keys = sorted(sizes, key=int)
    if len(keys) >= 2:
        small, large = keys[-2], keys[-1]
        ratio = int(large) / int(small)
        growth = (sizes[large]["validate_plus_plan_s_median"] / sizes[small]["validate_plus_plan_s_median"])
        mem = sizes[large]["peak_python_mib"] / sizes[small]["peak_python_mib"]
        rows.append((f"growth {int(small):,} -> {int(large):,} steps (time, memory)", f"x{growth:.1f}, x{mem:.1f}",
                     "linear growth", f"x{ratio:.0f}"))
    cli = b.get("cli", {})
    for mode, label in (("embedded_fresh_home", "embedded Prefect, fresh home (migrations)"),
                        ("embedded_migrated_home", "embedded Prefect, migrated home"),
                        ("prefect_server", "against a running `prefect server`")):
        if mode in cli:
            rows.append((f"CLI time to first step, cold process, {label}", _s(cli[mode]["dr_failover_s"]),
                         "bare Prefect flow, cold process, to first task", _s(cli[mode].get("bare_prefect_s"))))
    demo, script = b.get("demo", {}), b.get("script_baseline", {})
    if demo:
        med = demo.get("median", {})
        rows.append(("demo failover RTO (outage -> public health verified), median",
                     _s(med.get("rto_s")), "hand-written sequential script, same operations (bench/script_baseline.py)",
                     _s(_get(script, "median.rto_s"))))
        rows.append(("  of which irreducible work (actions running)", _s(med.get("irreducible_work_s")),
                     "script: sum of its operations", _s(_get(script, "median.steps_sum_s"))))
        rows.append(("  of which engine overhead (launch + between steps)", _s(med.get("engine_overhead_s")),
                     "script overhead", "0 by construction"))
    elif script:
        rows.append(("scripted failover RTO (bench/script_baseline.py)", _s(_get(script, "median.rto_s")), "-", "-"))
    evac = b.get("evacuation", {})
    for mode, label in (("engine", "engine alone"), ("embedded_prefect", "embedded Prefect, a child flow run each")):
        if mode in evac:
            apps = evac[mode]["applications"]
            rows.append((f"evacuation of {apps} applications x {evac['steps_per_application']} steps in "
                         f"{evac['tiers']} tiers, {label} (wall)", _s(evac[mode]["wall_s"]),
                         "critical-path ideal (wall / ideal)",
                         f"{_s(evac[mode]['ideal_s'])} ({_s(evac[mode]['overhead'], 'x')})"))
    return rows


def markdown(results: dict[str, Any]) -> list[str]:
    """The headline table as Markdown lines (empty when nothing ran)."""
    rows = headline(results)
    if not rows:
        return []
    lines = ["## Headline figures", "", "| figure | dr-engine | compared with | value |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows]
    return [*lines, "", "## All figures", ""]
