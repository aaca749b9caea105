"""Refreshes a device's TUF metadata from keel-server with python-tuf's ngclient.

usage: tuf_refresh.py METADATA_URL TARGET_TOKEN METADATA_DIR [--timestamp FILE] NAME...

Fetches with the device's DDI credentials (`Authorization: TargetToken ...`, as keel-agent does).
METADATA_DIR holds the device's trusted metadata (at least root.json) and is updated.
With --timestamp, FILE is used as timestamp.json instead of fetching it: a refresh that read
that timestamp earlier and fetches the rest now.
Prints {"root": trusted root version, "targets": {NAME: sha256 or null}} as JSON.
"""

import json
import sys
import urllib.error
import urllib.request

from tuf.api import exceptions
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface


class DeviceFetcher(FetcherInterface):
    def __init__(self, token, timestamp):
        self.token = token
        self.timestamp = timestamp

    def _fetch(self, url):
        if self.timestamp is not None and url.endswith("/timestamp.json"):
            return iter([self.timestamp])
        request = urllib.request.Request(url, headers={"Authorization": f"TargetToken {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return iter([response.read()])
        except urllib.error.HTTPError as e:
            raise exceptions.DownloadHTTPError(f"{url}: {e}", e.code) from e


args = sys.argv[1:]
metadata_url, token, metadata_dir, *rest = args
timestamp = None
if rest[:1] == ["--timestamp"]:
    with open(rest[1], "rb") as f:
        timestamp = f.read()
    rest = rest[2:]
updater = Updater(metadata_dir, metadata_url, fetcher=DeviceFetcher(token, timestamp))
updater.refresh()
found = {}
for name in rest:
    info = updater.get_targetinfo(name)
    found[name] = None if info is None else info.hashes["sha256"]
root = json.load(open(f"{metadata_dir}/root.json"))["signed"]["version"]
print(json.dumps({"root": root, "targets": found}))
