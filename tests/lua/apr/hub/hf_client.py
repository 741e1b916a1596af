#!/usr/bin/env python3
"""hf_client.py — the official client (huggingface_hub, from PyPI) against
the test hub and the cache apr shares with it. Prints one JSON line.

  hf_client.py download REPO FILE   hf_hub_download from $HF_ENDPOINT
  hf_client.py cached REPO FILE     hf_hub_download(local_files_only=True),
                                    and scan_cache_dir()'s view of the cache
"""
import hashlib
import json
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

from huggingface_hub import hf_hub_download, scan_cache_dir  # noqa: E402


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    mode, repo, filename = sys.argv[1:4]
    out = {}
    path = hf_hub_download(repo, filename, local_files_only=(mode == "cached"))
    out["path"] = path
    out["sha256"] = sha256(path)
    if mode == "cached":
        info = scan_cache_dir()
        out["warnings"] = [str(w) for w in info.warnings]
        out["repos"] = {}
        for r in info.repos:
            out["repos"][r.repo_id] = {
                "refs": sorted(ref for rev in r.revisions for ref in rev.refs),
                "files": sorted(f.file_name for rev in r.revisions for f in rev.files),
                "size": r.size_on_disk,
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
