"""Which code made a result: nash's version and, in a git checkout, the commit (with "+dirty"
when the checkout has uncommitted changes), recorded with every run."""
from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    try:
        version = metadata.version("nash")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = None
    found = {"nash": version}
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                    timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            if commit:
                found["commit"] = commit + ("+dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):  # no git here: the version alone
            pass
    return found


def describe(version: dict | None) -> str:
    if not version:
        return "unknown"
    commit = version.get("commit")
    return f"nash {version.get('nash')}" + (f" ({commit[:12]}{'+dirty' if commit.endswith('+dirty') else ''})"
                                            if commit else "")
