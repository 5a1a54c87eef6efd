#!/usr/bin/env python3
"""Structural check of deploy/grafana/doc-poller.json, and of the metric
names it and deploy/prometheus/alerts.yml use.

    check_dashboard.py SOURCE_DIR

Fails (exit 1, every problem listed) unless: the dashboard is a Grafana
dashboard (uid, title, schemaVersion, panels with unique ids, known types,
grid positions inside the 24 columns that do not overlap, targets with
unique refIds and an expression); every expression parses as PromQL
(promtool check rules); every taskhost_plugin_* metric used is one the
doc-poller schema declares, every other taskhost_* metric one that
core/api/metrics.cpp exposes; and the panels the issue asks for are there.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

source = sys.argv[1]
problems = []


def problem(text):
    problems.append(text)


dashboard_path = os.path.join(source, "deploy/grafana/doc-poller.json")
alerts_path = os.path.join(source, "deploy/prometheus/alerts.yml")
with open(dashboard_path) as f:
    d = json.load(f)
with open(os.path.join(source, "schemas/doc-poller.yaml")) as f:
    declared = set(yaml.safe_load(f)["metrics"])
with open(os.path.join(source, "core/api/metrics.cpp")) as f:
    platform = set(re.findall(r'"(taskhost_[a-z_]+)"', f.read()))

for key, kind in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list)):
    if not isinstance(d.get(key), kind):
        problem(f"dashboard: {key} must be a {kind.__name__}")
panels = d.get("panels") or []
if not panels:
    problem("dashboard: no panels")

exprs = []  # (where, expr)
ids = set()
cells = {}
for i, p in enumerate(panels):
    where = f"panels[{i}] ({p.get('title', '?')})"
    if not isinstance(p.get("id"), int) or p["id"] in ids:
        problem(f"{where}: id must be a unique integer")
    ids.add(p.get("id"))
    if p.get("type") not in {"stat", "timeseries", "gauge", "table", "bargauge", "text"}:
        problem(f"{where}: unknown panel type {p.get('type')!r}")
    if not p.get("title"):
        problem(f"{where}: no title")
    g = p.get("gridPos", {})
    if not all(isinstance(g.get(k), int) for k in "xywh") or g.get("w", 0) <= 0 or g.get("h", 0) <= 0:
        problem(f"{where}: gridPos needs integer x, y, w, h")
        continue
    if g["x"] < 0 or g["x"] + g["w"] > 24:
        problem(f"{where}: gridPos leaves the 24 columns")
    for x in range(g["x"], g["x"] + g["w"]):
        for y in range(g["y"], g["y"] + g["h"]):
            if (x, y) in cells:
                problem(f"{where}: overlaps {cells[(x, y)]}")
                break
            cells[(x, y)] = where
        else:
            continue
        break
    refs = set()
    targets = p.get("targets") or []
    if p.get("type") != "text" and not targets:
        problem(f"{where}: no targets")
    for t in targets:
        if not t.get("refId") or t["refId"] in refs:
            problem(f"{where}: target refIds must be unique and set")
        refs.add(t.get("refId"))
        if not t.get("expr"):
            problem(f"{where}: target {t.get('refId')} has no expr")
        else:
            exprs.append((where, t["expr"]))

with open(alerts_path) as f:
    for group in yaml.safe_load(f)["groups"]:
        for rule in group["rules"]:
            exprs.append((f"alert {rule['alert']}", rule["expr"]))

for where, expr in exprs:
    for name in set(re.findall(r"\btaskhost_[a-z0-9_]+", expr)):
        if name.startswith("taskhost_plugin_"):
            if name[len("taskhost_plugin_"):] not in declared:
                problem(f"{where}: {name} is not a metric schemas/doc-poller.yaml declares")
        elif re.sub(r"_(bucket|sum|count)$", "", name) not in platform:
            problem(f"{where}: {name} is not a metric core/api/metrics.cpp exposes")

# PromQL as Prometheus parses it: each expression as a recording rule.
rules = {"groups": [{"name": "dashboard", "rules": [
    {"record": f"dashboard:expr_{i}", "expr": e.replace("$__rate_interval", "5m")}
    for i, (_, e) in enumerate(exprs)]}]}
with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
    yaml.safe_dump(rules, f)
try:
    r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    if r.returncode != 0:
        problem("PromQL: " + r.stdout + r.stderr)
finally:
    os.unlink(f.name)

# What the issue asks the dashboard to show.
wanted = {
    "states over time by document type": r"by \(document_type\).*documents_(completed|failed)_total",
    "failures by step": r"by \(step\).*documents_failed_total",
    "stale count": r"stale_documents",
    "polling errors": r"polling_errors_total",
    "last successful poll": r"last_success_timestamp_seconds",
}
dashboard_exprs = [e for w, e in exprs if w.startswith("panels")]
for what, pattern in wanted.items():
    if not any(re.search(pattern, e) for e in dashboard_exprs):
        problem(f"dashboard: no panel shows {what}")

for p in problems:
    print(p)
print(f"{len(panels)} panels, {len(exprs)} expressions: " + ("FAILED" if problems else "ok"))
sys.exit(1 if problems else 0)
