#!/usr/bin/python3
"""pandas read_fwf on the same layout: python3 read_fwf.py LAYOUT.yaml FILE [RECORDS]

Reads the DT records (every field, as read_fwf types them), then applies the
signs to the D2 amounts, as esi-parser does. RECORDS limits the rows read
(pandas holds the whole frame in memory)."""
import sys, time, yaml
import pandas as pd

layout = yaml.safe_load(open(sys.argv[1]))
dt = layout["records"]["DT"]
nrows = int(sys.argv[3]) if len(sys.argv) > 3 else None
colspecs = [(f["start"] - 1, f["end"]) for f in dt]
names = [f["name"] for f in dt]
t0 = time.perf_counter()
df = pd.read_fwf(sys.argv[2], colspecs=colspecs, names=names, skiprows=1, nrows=nrows,
                 encoding="latin-1", dtype=str, keep_default_na=False)
df = df[df["record_type"] == "DT"]
for f in dt:
    if f["type"] == "SIGN":
        amount = pd.to_numeric(df[f["sign_of"]], errors="coerce")
        df[f["sign_of"]] = amount.where(df[f["name"]] != "-", -amount)
elapsed = time.perf_counter() - t0
nbytes = len(df) * 1701
print(f"pandas {pd.__version__} read_fwf: {len(df)} DT records, {elapsed:.2f} s, "
      f"{nbytes / 1e6 / elapsed:.2f} MB/s, {len(df) / elapsed:.0f} records/s")
