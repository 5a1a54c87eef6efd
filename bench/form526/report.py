"""Prints bench/form526's figures from the run's JSON: report.py RUN.json IDS WALL_SECONDS."""
import json
import sys

run = json.load(open(sys.argv[1]))
ids, wall = int(sys.argv[2]), float(sys.argv[3])
o = run["output"]
done = o["uploaded"] + o["skipped_existing"]
print(f"state {run['state']}: {o['uploaded']} uploaded, {o['failed']} failed of {o['total']}")
print(f"{done / wall:.1f} bundles/s ({done} in {wall:.1f} s; goal 42/s, 150,000 in an hour)")
s = o["seconds"]
thread = ("db", "fetch", "upload", "record")
print("run's thread: " + ", ".join(f"{k} {s[k]:.1f} s" for k in thread) +
      f" = {sum(s[k] for k in thread):.1f} s of {wall:.1f} s")
print("builds, on their threads: " + ", ".join(f"{k} {s[k]:.1f} s" for k in ("render", "zip", "hash")) +
      f"; per bundle: render {1000 * s['render'] / ids:.1f} ms, zip {1000 * s['zip'] / ids:.1f} ms, "
      f"hash {1000 * s['hash'] / ids:.1f} ms")
print(f"per bundle on the run's thread: fetch {1000 * s['fetch'] / ids:.1f} ms, "
      f"upload {1000 * s['upload'] / ids:.1f} ms, record {1000 * s['record'] / ids:.1f} ms")
