"""The peer's INSERT ... SELECT: esi_accumulators' rows (the same columns as
plugins/esi_parser/columns.hpp makes) from raw 1,700-byte lines, with
substr() expressions generated from the layout YAML.

Each line is first turned back into its Latin-1 bytes (bytea, once per row):
substr() of text in a UTF-8 database walks the line character by character
from its start, so 100 fields of a 1,700-byte line cost 100 walks; of bytea
it is a slice. Text fields are read back from Latin-1 (convert_from).

    peer_sql.py LAYOUT.yaml RAW_TABLE TARGET_TABLE
"""
import re
import sys

import yaml

layout_path, raw, target = sys.argv[1:4]
layout = yaml.safe_load(open(layout_path))
dt = layout["records"]["DT"]
by_name = {f["name"]: f for f in dt}
signs = {f["sign_of"]: f for f in dt if f["type"] == "SIGN"}
disc = layout["discriminator"]


def sub(f):
    """The field's bytes, as text: Latin-1 is one character per byte."""
    return f"convert_from(substr(b, {f['start']}, {f['end'] - f['start'] + 1}), 'LATIN1')"


def expr(f):
    """One field as its column's value; a field of spaces is null."""
    s = sub(f)
    t = f["type"]
    if t == "AN":
        return f"nullif(rtrim({s}, ' '), '')"
    if t == "N":
        return f"nullif(trim({s}), '')::bigint"
    if t == "DATE":
        return f"nullif(nullif(trim({s}), ''), '00000000')::date"
    if t == "D3":
        return f"(nullif(trim({s}), '')::numeric / 1000)"
    if t == "D2":
        v = f"nullif(trim({s}), '')::bigint"
        if f["name"] in signs:
            return f"(CASE WHEN {sub(signs[f['name']])} = '-' THEN -{v} ELSE {v} END)"
        return v
    raise SystemExit(f"{f['name']}: type {t} is not in the DT record")


block = re.compile(r"accumulator_(\d+)_(.*)")
columns, values, arrays = [], [], {}
count = expr(by_name["accumulator_balance_count"])
for f in dt:
    n = f["name"]
    if f["type"] == "SIGN" or n == "record_type" or n.startswith("reserved"):
        continue
    suffix = "_cents" if f["type"] == "D2" else ""
    m = block.fullmatch(n)
    if m:
        name = f"accumulator_{m.group(2)}{suffix}"
        if name not in arrays:
            arrays[name] = []
            columns.append(name)
            values.append(name)  # filled in below
        arrays[name].append(expr(f))
        continue
    columns.append(n + suffix)
    values.append(expr(f))
# The blocks in use (accumulator_balance_count, at most 12), as the plugin.
in_use = f"least(coalesce({count}, 0), 12)"
# Only the blocks in use are read (a CASE evaluates one branch).
def array(elements):
    whens = " ".join(
        f"WHEN {k} THEN ARRAY[{', '.join(elements[:k])}]" for k in range(1, len(elements) + 1)
    )
    return f"CASE {in_use} {whens} ELSE '{{}}' END"


values = [array(arrays[v]) if v in arrays else v for v in values]
print(
    f"INSERT INTO {target} (source_key, source_sha256, source_line, run_id, "
    + ", ".join(columns)
    + ")\nSELECT :'key', :'sha256', n, 'peer',\n  "
    + ",\n  ".join(values)
    # OFFSET 0: computed once per row, not pulled up into every reference.
    + f"\nFROM {raw}, LATERAL (SELECT convert_to(line, 'LATIN1') AS b OFFSET 0) l"
    + f"\nWHERE {sub(disc)} = 'DT'"
)
