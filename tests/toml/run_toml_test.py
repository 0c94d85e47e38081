#!/usr/bin/python3
"""Runs the toml-test conformance data against our decoder.

usage: run_toml_test.py DECODER SUITE_DIR valid|invalid FOLDER
FOLDER is a sub-folder of SUITE_DIR/KIND, or "." for the files directly in it.
Valid cases must decode to JSON equal (by toml-test's rules) to the .json
file; invalid cases must be rejected with exit status 1. Every failing case
is printed; the exit status is 1 when any failed.
"""
import concurrent.futures
import datetime
import json
import math
import os
import re
import subprocess
import sys

TIMEOUT_S = 5


def norm_datetime(kind, text):
    """Parses a datetime value to something comparable (ms precision, truncated)."""
    t = text.replace(" ", "T").replace("t", "T").replace("z", "Z")
    m = re.fullmatch(
        r"(?:(\d{4})-(\d{2})-(\d{2}))?T?(?:(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?", t)
    if not m:
        return ("unparsable", t)
    y, mo, d, h, mi, s, frac, off = m.groups()
    ms = int((frac or "0")[:3].ljust(3, "0"))
    if kind == "datetime":
        tz = datetime.timezone.utc
        if off and off != "Z":
            sign = 1 if off[0] == "+" else -1
            tz = datetime.timezone(sign * datetime.timedelta(hours=int(off[1:3]), minutes=int(off[4:6])))
        if off is None:
            return ("no offset", t)
        return datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), ms * 1000, tz)
    return (y, mo, d, h, mi, s, ms, off)


def leaf_equal(exp, got):
    kind = exp["type"]
    if kind != got["type"]:
        return False
    e, g = exp["value"], got["value"]
    if kind == "float":
        e, g = e.lower(), g.lower()
        if e.endswith("nan") or g.endswith("nan"):
            return e.lstrip("+-") == g.lstrip("+-")
        return float(e) == float(g)
    if kind == "bool":
        return e.lower() == g.lower()
    if kind in ("datetime", "datetime-local", "date-local", "time-local"):
        return norm_datetime(kind, e) == norm_datetime(kind, g)
    return e == g


def is_leaf(v):
    return isinstance(v, dict) and set(v.keys()) == {"type", "value"}


def diff(exp, got, path="$"):
    """Returns a description of the first difference, or None."""
    if is_leaf(exp):
        if not is_leaf(got):
            return f"{path}: expected a {exp['type']} value, got {json.dumps(got)[:80]}"
        if not leaf_equal(exp, got):
            return f"{path}: expected {json.dumps(exp)}, got {json.dumps(got)}"
        return None
    if isinstance(exp, dict):
        if not isinstance(got, dict) or is_leaf(got):
            return f"{path}: expected a table, got {json.dumps(got)[:80]}"
        if set(exp) != set(got):
            return f"{path}: keys differ: expected {sorted(exp)}, got {sorted(got)}"
        for k in exp:
            d = diff(exp[k], got[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(exp, list):
        if not isinstance(got, list) or len(exp) != len(got):
            return f"{path}: expected an array of {len(exp)}, got {json.dumps(got)[:80]}"
        for i, (a, b) in enumerate(zip(exp, got)):
            d = diff(a, b, f"{path}[{i}]")
            if d:
                return d
        return None
    return f"{path}: unexpected JSON {json.dumps(exp)[:80]}"


def run(decoder, path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        r = subprocess.run([decoder], input=data, capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, b"", b"timed out"
    return r.returncode, r.stdout, r.stderr


def check_valid(decoder, toml_path):
    rc, out, err = run(decoder, toml_path)
    if rc != 0 or err:
        return f"rejected (exit {rc}): {err.decode(errors='replace').strip()}"
    with open(toml_path[:-5] + ".json", "rb") as f:
        expected = json.loads(f.read())
    try:
        got = json.loads(out)
    except ValueError as e:
        return f"decoder printed invalid JSON: {e}"
    return diff(expected, got)


def check_invalid(decoder, toml_path):
    rc, out, err = run(decoder, toml_path)
    if rc == 1:
        return None
    if rc is None:
        return "timed out"
    if rc == 0:
        return "accepted, should be rejected; got " + out.decode(errors="replace").strip()[:200]
    return f"exit status {rc} (want 1; crash?): {err.decode(errors='replace').strip()[:200]}"


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    decoder, suite, kind, folder = sys.argv[1:]
    if not os.path.isdir(suite):
        print(f"SKIP: toml-test suite not found at {suite}")
        return 0
    base = os.path.join(suite, kind, folder)
    cases = sorted(os.path.join(base, n) for n in os.listdir(base) if n.endswith(".toml"))
    check = check_valid if kind == "valid" else check_invalid
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: (c, check(decoder, c)), cases))
    failed = [(c, why) for c, why in results if why]
    for c, why in failed:
        print(f"FAIL {os.path.relpath(c, suite)}: {why}")
    print(f"{kind}/{folder}: {len(cases) - len(failed)}/{len(cases)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
