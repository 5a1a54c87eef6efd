#!/usr/bin/env python3
"""Checks form526-resubmit's hand-off the way its recipient would see it.

    form526_check.py RESULT.csv EXPECTED.json DATE WORKDIR

Each id of the result exactly once; each bundle fetched with curl through its
presigned link, its digest compared with the result's, the zip tested by
`unzip -t` and read by Python's zipfile, metadata.json validated against the
benefits-intake shape, the PDF read by pdfinfo and pdftotext: the veteran's
name and "Resubmitted DATE" on every page. Prints one line per problem and
exits 1 if there was any.
"""
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile

result_path, expected_path, date, work = sys.argv[1:5]
expected = json.load(open(expected_path, encoding="utf-8"))
problems = []
rows = list(csv.DictReader(open(result_path, encoding="utf-8", newline="")))
seen = {}
for r in rows:
    seen[r["submission_id"]] = seen.get(r["submission_id"], 0) + 1
for sid, n in seen.items():
    if n != 1:
        problems.append(f"{sid}: {n} rows")

NAME = re.compile(r"^[A-Za-z/\- ]{1,50}$")
METADATA = {"veteranFirstName": str, "veteranLastName": str, "fileNumber": str, "zipCode": str,
            "source": str, "docType": str, "businessLine": str, "claimDate": str,
            "numberAttachments": int}
mmddyy = f"{date[5:7]}.{date[8:10]}.{date[2:4]}"
checked = 0
for r in rows:
    if r["status"] not in ("uploaded", "skipped_existing"):
        continue
    sid = r["submission_id"]
    where = f"{sid}:"
    if not r["object_key"].endswith(f"/remediation/{mmddyy}-Form21-526EZ/"
                                    f"{mmddyy}_form_21-526EZ_vagov_{sid}.zip"):
        problems.append(f"{where} object key {r['object_key']}")
    path = os.path.join(work, sid + ".zip")
    if subprocess.run(["curl", "-sSf", "-o", path, r["presigned_url"]]).returncode != 0:
        problems.append(f"{where} presigned link failed")
        continue
    data = open(path, "rb").read()
    if hashlib.sha256(data).hexdigest() != r["sha256"]:
        problems.append(f"{where} sha256 differs from the result's")
    t = subprocess.run(["unzip", "-tq", path], capture_output=True, text=True)
    if t.returncode != 0:
        problems.append(f"{where} unzip -t: {t.stdout}{t.stderr}")
    with zipfile.ZipFile(path) as z:
        if z.testzip() is not None:
            problems.append(f"{where} zipfile: bad member {z.testzip()}")
        names = z.namelist()
        pdf_name = f"{mmddyy}_form_21-526EZ_vagov_{sid}.pdf"
        if names[:3] != [pdf_name, "metadata.json", "mappings.json"]:
            problems.append(f"{where} members {names}")
            continue
        meta = json.loads(z.read("metadata.json"))
        for key, kind in METADATA.items():
            if not isinstance(meta.get(key), kind):
                problems.append(f"{where} metadata.{key} = {meta.get(key)!r}")
        if set(meta) != set(METADATA):
            problems.append(f"{where} metadata keys {sorted(meta)}")
        if not (NAME.match(meta.get("veteranFirstName", "")) and
                NAME.match(meta.get("veteranLastName", ""))):
            problems.append(f"{where} metadata names {meta.get('veteranFirstName')!r} "
                            f"{meta.get('veteranLastName')!r}")
        if not re.fullmatch(r"\d{8,9}", meta.get("fileNumber", "")):
            problems.append(f"{where} fileNumber {meta.get('fileNumber')!r}")
        if not re.fullmatch(r"\d{5}", meta.get("zipCode", "")):
            problems.append(f"{where} zipCode {meta.get('zipCode')!r}")
        if (meta.get("docType"), meta.get("businessLine")) != ("21-526EZ", "CMP"):
            problems.append(f"{where} docType/businessLine {meta.get('docType')} "
                            f"{meta.get('businessLine')}")
        if meta.get("numberAttachments") != len(names) - 3:
            problems.append(f"{where} numberAttachments {meta.get('numberAttachments')} "
                            f"for {len(names) - 3} documents")
        mappings = json.loads(z.read("mappings.json"))
        if [m["file"] for m in mappings] != names[3:]:
            problems.append(f"{where} mappings {mappings}")
        pdf = os.path.join(work, sid + ".pdf")
        open(pdf, "wb").write(z.read(pdf_name))
    info = subprocess.run(["pdfinfo", pdf], capture_output=True, text=True)
    pages = re.search(r"^Pages:\s+(\d+)", info.stdout, re.M)
    if info.returncode != 0 or not pages:
        problems.append(f"{where} pdfinfo: {info.stderr}")
        continue
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", pdf, "-"], capture_output=True,
                          text=True).stdout
    page_texts = [p for p in text.split("\f") if p.strip()]
    if len(page_texts) != int(pages.group(1)):
        problems.append(f"{where} {len(page_texts)} pages of text, pdfinfo says {pages.group(1)}")
    for n, p in enumerate(page_texts, 1):
        if f"Resubmitted {date}" not in p:
            problems.append(f"{where} page {n} has no datestamp")
    name = expected["names"][sid]
    if name not in " ".join(text.split()):
        problems.append(f"{where} the PDF does not show the name {name!r}")
    checked += 1

for p in problems[:50]:
    print(p)
print(f"checked {checked} bundles, {len(rows)} rows, {len(problems)} problems")
sys.exit(1 if problems else 0)
