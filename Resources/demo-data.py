#!/usr/bin/python3
"""Data and progress for Resources/demo.sh: free ports, uploads, and the mirror's counts.

Commands:
  free-ports N                      print N free TCP ports of 127.0.0.1, one a line
  wait URL                          wait until the Orthanc at URL responds to GET /system
  upload URL [--studies N]          store the pydicom samples and N generated studies
  watch SOURCE TARGET [--once]      print the counts as the instances reach the target

It uses the integration tests' helpers (UnitTests/Integration/harness.py) for the DICOM data.
"""

import argparse
import json
import os
import sys
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "UnitTests",
                                "Integration"))

import harness  # noqa: E402

WAIT_TIMEOUT_SECONDS = 60
WATCH_INTERVAL_SECONDS = 2
DEFAULT_STUDIES = 3
SERIES_PER_STUDY = 3
INSTANCES_PER_SERIES = 8
INSTANCE_BYTES = 64 * 1024
REQUEST_TIMEOUT_SECONDS = 30


class Orthanc:
    """Minimal client of an Orthanc REST API that the harness's helpers accept."""

    def __init__(self, url, name):
        self.url = url.rstrip("/")
        self.name = name
        self.session = requests.Session()

    def get(self, path, **arguments):
        arguments.setdefault("timeout", REQUEST_TIMEOUT_SECONDS)
        return self.session.get(self.url + path, **arguments)

    def post(self, path, **arguments):
        arguments.setdefault("timeout", REQUEST_TIMEOUT_SECONDS)
        return self.session.post(self.url + path, **arguments)

    def get_json(self, path):
        response = self.get(path)
        response.raise_for_status()
        return response.json()


def print_free_ports(count):
    ports = set()
    while len(ports) < count:
        ports.add(harness.free_port())
    for port in ports:
        print(port)
    return 0


def wait_ready(url):
    orthanc = Orthanc(url, url)
    deadline = time.monotonic() + WAIT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if orthanc.get("/system", timeout=2).status_code == 200:
                return 0
        except requests.RequestException:
            pass
        time.sleep(0.2)
    print(f"error: Orthanc at {url} did not respond to GET /system within "
          f"{WAIT_TIMEOUT_SECONDS} s", file=sys.stderr)
    return 1


def upload(url, studies):
    orthanc = Orthanc(url, "source")
    samples = harness.upload_samples(orthanc)
    generated = 0
    for _ in range(studies):
        instances = harness.make_study(SERIES_PER_STUDY, INSTANCES_PER_SERIES, INSTANCE_BYTES)
        generated += len(harness.upload_all(orthanc, instances))
    total = len(harness.list_instances(orthanc))
    print(f"stored {len(samples)} pydicom sample files and {generated} instances of {studies} "
          f"generated studies: {total} instances in the source Orthanc", flush=True)
    return 0


def describe(status, target_count, source_count):
    counts = status["Counts"]
    line = (f"{status['State']}: pending {counts['Pending']}, "
            f"sending {counts['Sending']}, mirrored {counts['Mirrored']}, already present "
            f"{counts['AlreadyPresent']}, failed {counts['Failed']}; at the target "
            f"{target_count} of {source_count}")
    if status.get("LastError"):
        line += f"; last error: {status['LastError'].get('Message', '')}"
    return line


def watch(source_url, target_url, once, timeout):
    """Print the counts until interrupted, or with once until all is mirrored (exit 0)."""
    source = Orthanc(source_url, "source")
    target = Orthanc(target_url, "target")
    deadline = time.monotonic() + timeout
    last_line = None
    while True:
        status = source.get_json("/azure-dicom/status")
        source_uids = harness.list_sop_uids(source)
        target_uids = harness.list_sop_uids(target)
        line = describe(status, len(target_uids & source_uids), len(source_uids))
        if line != last_line:
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
            last_line = line
        counts = status["Counts"]
        idle = counts["Pending"] == 0 and counts["Sending"] == 0
        if once and idle and source_uids and source_uids <= target_uids:
            print(json.dumps(status, indent=2, sort_keys=True))
            return 0
        if once and time.monotonic() >= deadline:
            print(f"error: timed out after {timeout} s before every instance reached the "
                  f"target; last status:\n{json.dumps(status, indent=2, sort_keys=True)}",
                  file=sys.stderr)
            return 1
        time.sleep(WATCH_INTERVAL_SECONDS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ports = commands.add_parser("free-ports", help="print free TCP ports of 127.0.0.1")
    ports.add_argument("count", type=int)
    ready = commands.add_parser("wait", help="wait until an Orthanc responds")
    ready.add_argument("url")
    store = commands.add_parser("upload", help="store the sample and generated studies")
    store.add_argument("url")
    store.add_argument("--studies", type=int, default=DEFAULT_STUDIES,
                       help=f"generated studies of {SERIES_PER_STUDY} series of "
                            f"{INSTANCES_PER_SERIES} instances (default {DEFAULT_STUDIES})")
    progress = commands.add_parser("watch", help="print the counts of the mirror")
    progress.add_argument("source")
    progress.add_argument("target")
    progress.add_argument("--once", action="store_true",
                          help="exit 0 when every instance is at the target")
    progress.add_argument("--timeout", type=float, default=600,
                          help="seconds before --once gives up (default 600)")
    options = parser.parse_args()

    try:
        if options.command == "free-ports":
            return print_free_ports(options.count)
        if options.command == "wait":
            return wait_ready(options.url)
        if options.command == "upload":
            return upload(options.url, options.studies)
        return watch(options.source, options.target, options.once, options.timeout)
    except KeyboardInterrupt:
        return 130
    except (requests.RequestException, AssertionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
