"""Trim botocore's data in the built DependenciesLayer to the services costgate's functions call.

Usage: python trim_botocore.py BOTOCORE_DATA_DIR SERVICE [SERVICE ...]

- Each other service's API models go (~24 MB): ApiFunction needs the room for the guards' Kiwi model.
- endpoints.json keeps only those services' entries in every partition: every client parses the whole
  file (1.25 MB, ~28 ms of each cold start on the dev machine, bench_gateway) to resolve its endpoint, and
  a service without an entry would still resolve from its partition's defaults. The partitions, their
  regions and defaults stay as they are.
"""

import json
import shutil
import sys
from pathlib import Path


def trim(data: Path, services: set[str]) -> None:
    for folder in data.iterdir():
        if folder.is_dir() and folder.name not in services:
            shutil.rmtree(folder)
    endpoints_path = data / "endpoints.json"
    endpoints = json.loads(endpoints_path.read_text(encoding="utf-8"))
    for partition in endpoints["partitions"]:
        partition["services"] = {name: entry for name, entry in partition["services"].items() if name in services}
    endpoints_path.write_text(json.dumps(endpoints, separators=(",", ":")), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) < 3 or not Path(sys.argv[1], "endpoints.json").is_file():
        sys.exit(f"usage: {sys.argv[0]} BOTOCORE_DATA_DIR SERVICE [SERVICE ...] (the directory holds endpoints.json)")
    trim(Path(sys.argv[1]), set(sys.argv[2:]))
