"""Clients that load the servers under test: REST stores, paced stores, storescu and curl."""

import http.client
import itertools
import json
import os
import subprocess
import threading
import time
import urllib.parse


REQUEST_TIMEOUT_SECONDS = 600


class StoreError(Exception):
    """Orthanc rejected a store, or the connection failed."""


STORE_ATTEMPTS = 5
STORE_RETRY_SECONDS = 0.05
# Orthanc's error "Unable to create a subdirectory or a file in the file storage". Orthanc 1.10
# raises it when two stores create the same storage folder at once; later versions retry.
ORTHANC_STORAGE_CANNOT_WRITE = 2001


def should_retry(status, text):
    """Return whether a failed store may succeed when it is sent again."""
    if status == 503:
        return True
    if status != 500:
        return False
    try:
        return json.loads(text).get("OrthancStatus") == ORTHANC_STORAGE_CANNOT_WRITE
    except (ValueError, AttributeError):  # not a JSON object
        return False


def post_file(connection, path):
    """POST one file to /instances on a kept-open connection; return Orthanc's response body.

    Orthanc's PostgreSQL index returns 503 when two transactions conflicted and the request
    should be repeated. Such a store, or one that lost Orthanc 1.10's race to create a storage
    folder, is sent again, up to STORE_ATTEMPTS times in all.
    """
    with open(path, "rb") as source:
        data = source.read()
    for attempt in range(1, STORE_ATTEMPTS + 1):
        connection.request("POST", "/instances", body=data,
                           headers={"Content-Type": "application/dicom"})
        response = connection.getresponse()
        text = response.read()
        if response.status == 200:
            return text
        if not should_retry(response.status, text) or attempt == STORE_ATTEMPTS:
            break
        time.sleep(STORE_RETRY_SECONDS * attempt)
    raise StoreError(f"POST /instances of {path} returned HTTP {response.status}: "
                     f"{text[:300]!r}")


class ParallelStore:
    """Stores files through Orthanc's REST API from several threads, each with its own
    kept-open connection, in the order of the list.

    run() blocks; start() runs it in a thread so that the caller can measure meanwhile.
    """

    def __init__(self, url, paths, clients):
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname
        self.port = parsed.port
        self.paths = paths
        self.clients = clients
        self.started_at = None
        self.finished_at = None
        self.errors = []
        self.thread = None

    def run(self):
        indexes = itertools.count()
        lock = threading.Lock()

        def work():
            connection = http.client.HTTPConnection(self.host, self.port,
                                                    timeout=REQUEST_TIMEOUT_SECONDS)
            try:
                while not self.errors:
                    with lock:
                        index = next(indexes)
                    if index >= len(self.paths):
                        return
                    post_file(connection, self.paths[index])
            except (OSError, http.client.HTTPException, StoreError) as error:
                self.errors.append(error)
            finally:
                connection.close()

        workers = [threading.Thread(target=work, daemon=True) for _ in range(self.clients)]
        self.started_at = time.time()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self.finished_at = time.time()
        return self

    def start(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def wait(self):
        self.thread.join()
        return self

    def check(self):
        if self.errors:
            raise StoreError(f"{len(self.errors)} store clients failed; first error: "
                             f"{self.errors[0]}")

    @property
    def seconds(self):
        return self.finished_at - self.started_at


def store_paced(url, paths, rate):
    """Store files one by one at a steady rate per second.

    Returns the wall-clock time (seconds since the epoch) when each POST was sent, and
    Orthanc's ID of each instance, in order. A store that takes longer than 1 / rate delays
    the next one, so the rate is a maximum.
    """
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port,
                                            timeout=REQUEST_TIMEOUT_SECONDS)
    interval = 1.0 / rate
    sent_at = []
    ids = []
    started = time.monotonic()
    try:
        for index, path in enumerate(paths):
            delay = started + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent_at.append(time.time())
            response = post_file(connection, path)
            ids.append(json.loads(response)["ID"])
    finally:
        connection.close()
    return sent_at, ids


def run_storescu(port, directory, environment, aet="ORTHANC"):
    """Send every file under directory with one storescu association; return the seconds.

    environment is added to storescu's environment. Raises subprocess.CalledProcessError when
    storescu fails, with its output.
    """
    command = ["storescu", "--aetitle", "BENCH", "--call", aet, "--scan-directories",
               "--recurse", "--scan-pattern", "*.dcm", "127.0.0.1", str(port), directory]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, check=False,
                               env={**os.environ, **environment})
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise subprocess.CalledProcessError(completed.returncode, command, completed.stdout,
                                            completed.stderr)
    return seconds


class CurlUpload:
    """Posts prebuilt STOW-RS bodies with `xargs -P connections curl`: each curl process
    sends its share of the bodies, one after the other, over one kept-open connection."""

    def __init__(self, stow_url, bodies, content_type, connections, directory):
        self.stow_url = stow_url
        self.bodies = bodies
        self.content_type = content_type
        self.connections = connections
        self.directory = directory
        self.statuses = []
        self.seconds = None
        self.cpu_seconds = None
        self.peak_rss = None

    def write_configurations(self):
        """Write one curl configuration file per connection; return their paths."""
        os.makedirs(self.directory, exist_ok=True)
        paths = []
        for index in range(self.connections):
            share = self.bodies[index::self.connections]
            if not share:
                continue
            path = os.path.join(self.directory, f"curl-{index}.conf")
            with open(path, "w", encoding="utf-8") as configuration:
                for position, body in enumerate(share):
                    if position > 0:
                        configuration.write("next\n")
                    configuration.write(
                        f'url = "{self.stow_url}"\n'
                        f'header = "Content-Type: {_escape(self.content_type)}"\n'
                        'header = "Accept: application/dicom+json"\n'
                        # No "Expect: 100-continue" wait before each body, as in the plugin.
                        'header = "Expect:"\n'
                        f'data-binary = "@{body}"\n'
                        'output = "/dev/null"\n'
                        'write-out = "%{http_code}\\n"\n'
                        "silent\nshow-error\n")
            paths.append(path)
        return paths

    def run(self):
        configurations = self.write_configurations()
        list_path = os.path.join(self.directory, "configurations.txt")
        with open(list_path, "w", encoding="utf-8") as listing:
            listing.write("\n".join(configurations) + "\n")

        output_path = os.path.join(self.directory, "curl-output.txt")
        rss_path = os.path.join(self.directory, "curl-peak-rss.txt")
        # GNU time appends each curl's peak RSS in KiB. The usage that wait4 returns for xargs
        # would not do: its peak RSS includes this Python process's, inherited at the fork.
        command = ["xargs", "--arg-file", list_path, "-P", str(self.connections), "-n", "1",
                   "/usr/bin/time", "--append", "--output", rss_path, "--format", "%M",
                   "curl", "--config"]
        started = time.monotonic()
        with open(output_path, "w", encoding="utf-8") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
            # wait4 returns the CPU time of xargs and of every curl that it waited for, so the
            # time is that of this upload only.
            _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        self.seconds = time.monotonic() - started
        self.cpu_seconds = usage.ru_utime + usage.ru_stime

        with open(rss_path, encoding="ascii") as rss:
            self.peak_rss = max(int(line) for line in rss.read().split()) * 1024
        with open(output_path, encoding="utf-8") as output:
            lines = output.read().split("\n")
        self.statuses = [line for line in lines if line.isdigit()]
        failed = [status for status in self.statuses if status != "200"]
        if process.returncode != 0 or len(self.statuses) != len(self.bodies) or failed:
            raise RuntimeError(f"curl failed (xargs exit code {process.returncode}, "
                               f"{len(self.statuses)} of {len(self.bodies)} responses, "
                               f"statuses other than 200: {sorted(set(failed))}); see "
                               f"{output_path}")
        return self


def _escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')
