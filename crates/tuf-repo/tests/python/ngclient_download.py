"""Refreshes with python-tuf's ngclient and downloads targets.

usage: ngclient_download.py METADATA_URL TARGET_URL METADATA_DIR TARGET_DIR NAME...

METADATA_DIR must already hold the trusted root.json. Each target is written to TARGET_DIR/<quoted name>.
Exit status 0 only if every target was found and verified.
"""

import sys

from tuf.ngclient import Updater

metadata_url, target_url, metadata_dir, target_dir, *names = sys.argv[1:]
updater = Updater(metadata_dir, metadata_url, target_dir, target_url)
updater.refresh()
for name in names:
    info = updater.get_targetinfo(name)
    if info is None:
        sys.exit(f"target {name} not found")
    path = updater.download_target(info)
    print(f"{name} -> {path}")
