"""Runs a command that must refuse to start: exit status 2 and EXPECTED in its stderr.

usage: expect_refusal.py EXPECTED COMMAND [ARGS...]
"""
import subprocess
import sys


def main():
    expected, argv = sys.argv[1], sys.argv[2:]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if proc.returncode != 2:
        print(f"exit status {proc.returncode}, want 2; stderr:\n{proc.stderr}")
        return 1
    if expected not in proc.stderr:
        print(f"stderr lacks {expected!r}:\n{proc.stderr}")
        return 1
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        if marker in proc.stderr:
            print(f"sanitizer report:\n{proc.stderr}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
