"""The measurements: each function runs one scenario on fresh servers and returns its record.

Rates count the instances confirmed at the target: by the plugin's status (Mirrored or
AlreadyPresent) for the plugin, by the target's own count for the other methods. CPU times are
the user plus system seconds of each process during the measured interval.
"""

import dataclasses
import datetime
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import time

import clients
import datasets
import processes
import servers

PLUGIN_INGEST = "plugin, while ingesting"
PLUGIN_BACKFILL = "plugin, back-fill"
STOW_JOB = "DICOMweb STOW job"
LUA_INSTANCE = "Lua, per instance"
LUA_STABLE = "Lua, on stable studies"
POLL_INTERVAL_SECONDS = 0.2
# How far a server's recorded end of a transfer may lie after the poll that saw it, because the
# outbox rounds its times to milliseconds (Orthanc's jobs record microseconds).
CLOCK_TOLERANCE_SECONDS = 0.01
JOB_TIMEOUT_SECONDS = 3600
PARALLEL_CLIENTS = 4
CURL = f"curl, {PARALLEL_CLIENTS} connections"
ARCHIVE_MARKER = "archive.json"
# A transfer whose first run took less than REPEATED_TRANSFER_MAX_SECONDS runs TRANSFER_RUNS
# times in all, because a stall of a second changes the rate of a short run by more than the
# margins of the goals. Longer runs, and runs stopped at their time limit, run once.
TRANSFER_RUNS = 3
REPEATED_TRANSFER_MAX_SECONDS = 60
# The methods that a goal compares run equally often: when the first runs of all of them took
# less than SHORT_TRANSFER_MAX_SECONDS, each runs SHORT_TRANSFER_RUNS times instead. On 2 CPUs,
# six runs of the 2 KB back-fill to the null sink, about 1.1 s each, ranged from 17,200 to
# 18,900 instances/s, so the fastest of three runs would be left to chance.
SHORT_TRANSFER_RUNS = 6
SHORT_TRANSFER_MAX_SECONDS = 10
COMPARED_METHODS = (("plugin-backfill", "stow-job", "curl"),
                    ("plugin-ingest", "lua-stable", "lua-instance"))

# The Lua scripts submit the DICOMweb plugin's STOW job with "Synchronous": false, so the call
# returns once the job is queued and Orthanc's job engine runs up to ConcurrentJobs (default 2)
# jobs at once. A synchronous call would send one instance or study at a time.
LUA_PER_INSTANCE = """-- Sends each stored instance with the DICOMweb plugin's STOW-RS client.
function OnStoredInstance(instanceId, tags, metadata, origin)
  RestApiPost('/dicom-web/servers/{server}/stow',
              '{{"Resources": ["' .. instanceId .. '"], "Synchronous": false}}')
end
"""

# Finished jobs that the Lua runs' Orthanc keeps (10 by default), so that the completion time
# of every STOW job can be read.
LUA_JOBS_HISTORY_SIZE = 10000

LUA_STABLE_STUDY = """-- Sends each stable study with the DICOMweb plugin's STOW-RS client.
function OnStableStudy(studyId, tags, metadata)
  RestApiPost('/dicom-web/servers/{server}/stow',
              '{{"Resources": ["' .. studyId .. '"], "Synchronous": false}}')
end
"""


@dataclasses.dataclass
class Transfer:
    """One transfer method, data set and target: rates, CPU and memory."""

    method: str
    target: str
    dataset: str
    expected: int
    confirmed: int = 0
    seconds: float = 0.0
    bytes: float = 0.0  # bytes of the confirmed instances' files
    sender_cpu: float = 0.0  # the source Orthanc, or curl
    receiver_cpu: float = 0.0  # the target Orthanc, or the null sink
    sender_peak_rss: int = 0
    busy_percent: float = 0.0
    others_percent: float = 0.0
    partial: bool = False
    error: str = ""
    note: str = ""
    run: int = 1  # which run of the same method, data set and target

    @property
    def ok(self):
        return not self.error and self.seconds > 0 and self.confirmed > 0

    @property
    def instances_per_second(self):
        return self.confirmed / self.seconds if self.ok else None

    @property
    def megabytes_per_second(self):
        return self.bytes / 1e6 / self.seconds if self.ok else None

    def cpu_per_gigabyte(self, total):
        if not self.ok or self.bytes <= 0:
            return None
        cpu = self.sender_cpu + (self.receiver_cpu if total else 0.0)
        return cpu / (self.bytes / 1e9)


class Context:
    """Paths, settings and shared servers of one benchmark run."""

    def __init__(self, plugin, work, sink, max_run_seconds, log):
        self.plugin = plugin
        self.work = work
        self.sink = sink
        self.max_run_seconds = max_run_seconds
        self.log = log
        self.cpus = os.cpu_count() or 1
        self.run_index = 0
        self.versions = {}

    def new_run_directory(self, label):
        self.run_index += 1
        directory = os.path.join(self.work, "runs", f"{self.run_index:03d}-{label}")
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        return directory

    def record_versions(self, orthanc):
        """Store the versions of Orthanc and its plugins, read from a running source."""
        if "Orthanc" not in self.versions:
            self.versions["Orthanc"] = orthanc.get_json("/system")["Version"]
        for plugin in orthanc.get_json("/plugins"):
            key = f"plugin {plugin}"
            if plugin == "explorer.js":
                continue  # the plugins' extensions of Orthanc Explorer, not a plugin
            if key not in self.versions:
                self.versions[key] = orthanc.get_json(f"/plugins/{plugin}").get("Version", "")


def read_into_page_cache(*locations):
    """Read every file under the given folders (or the given files) once, so that every method
    finds its input in the page cache, whichever ran before it."""
    paths = []
    for location in locations:
        if isinstance(location, (list, tuple)):
            paths.extend(location)
        elif os.path.isdir(location):
            for folder, _, names in os.walk(location):
                paths.extend(os.path.join(folder, name) for name in names)
        else:
            paths.append(location)
    for path in paths:
        with open(path, "rb") as source:
            while source.read(1 << 20):
                pass


class Interval:
    """CPU, peak RSS and machine load of a set of processes between start() and stop()."""

    def __init__(self, context, sender_pids, receiver_pids):
        self.context = context
        self.sender_pids = [pid for pid in sender_pids if pid]
        self.receiver_pids = [pid for pid in receiver_pids if pid]
        self.before = {}
        self.own_before = 0.0
        self.load = processes.MachineLoad()
        self.started = None
        self.started_wall = None
        self.seconds = None
        self.sender_cpu = 0.0
        self.receiver_cpu = 0.0
        self.own_cpu = 0.0

    def start(self):
        # Files written by earlier runs are flushed first, so that their writeback does not
        # share the disk and the CPUs with this one.
        os.sync()
        for pid in self.sender_pids:
            processes.reset_peak_rss(pid)
        self.before = {pid: processes.cpu_seconds(pid)
                       for pid in self.sender_pids + self.receiver_pids}
        self.own_before = processes.own_cpu_seconds()
        self.load.start()
        self.started = time.monotonic()
        self.started_wall = time.time()
        return self

    def elapsed(self):
        return time.monotonic() - self.started

    def stop(self):
        self.seconds = self.elapsed()
        self.load.stop()
        self.sender_cpu = sum(processes.cpu_seconds(pid) - self.before[pid]
                              for pid in self.sender_pids)
        self.receiver_cpu = sum(processes.cpu_seconds(pid) - self.before[pid]
                                for pid in self.receiver_pids)
        self.own_cpu = processes.own_cpu_seconds() - self.own_before
        return self

    def peak_rss(self):
        return max((processes.memory_bytes(pid)["VmHWM"] for pid in self.sender_pids),
                   default=0)

    def fill(self, record, extra_cpu=0.0, finished_at=None):
        """Copy the interval's figures into a Transfer record.

        finished_at, when given, is the time (seconds since the epoch) at which the server
        recorded the transfer's end. The record's duration then ends there instead of at the
        poll that saw the end, which comes up to POLL_INTERVAL_SECONDS later: a sixth of a
        1.2-s run. CPU time and load still cover the whole interval.
        """
        record.seconds = self.seconds
        if finished_at is not None:
            seconds = finished_at - self.started_wall
            if 0 < seconds <= self.seconds + CLOCK_TOLERANCE_SECONDS:
                record.seconds = seconds
            else:
                record.note = (f"the recorded end lies {seconds:.3f} s after the start, outside "
                               f"the polled {self.seconds:.3f} s, so the poll's time is kept")
        record.sender_cpu = self.sender_cpu + extra_cpu
        record.receiver_cpu = self.receiver_cpu
        record.busy_percent = self.load.busy_percent
        ours = self.sender_cpu + self.receiver_cpu + self.own_cpu + extra_cpu
        ours_percent = 100.0 * ours / (self.seconds * self.context.cpus)
        record.others_percent = max(0.0, self.load.busy_percent - ours_percent)


def wait_until(interval, count, expected, limit_seconds, check=None):
    """Poll count() until it reaches expected or limit_seconds pass; return (count, partial).

    check(), when given, is called at each poll and may raise to stop the wait with an error.
    """
    while True:
        confirmed = count()
        if confirmed >= expected:
            return confirmed, False
        if interval.elapsed() > limit_seconds:
            return confirmed, True
        if check is not None:
            check()
        time.sleep(POLL_INTERVAL_SECONDS)


def confirmed_by_plugin(orthanc):
    counts = orthanc.get_json("/azure-dicom/status")["Counts"]
    return counts["Mirrored"] + counts["AlreadyPresent"]


def read_last_confirmation(outbox_path):
    """Return when the plugin confirmed its last instance (seconds since the epoch), from the
    outbox's sent_at column (milliseconds), or None."""
    connection = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True)
    try:
        row = connection.execute("SELECT MAX(sent_at) FROM items "
                                 "WHERE state IN ('Mirrored', 'AlreadyPresent')").fetchone()
    finally:
        connection.close()
    return row[0] / 1000.0 if row and row[0] else None


def read_last_job_completion(orthanc):
    """Return when the last of the Orthanc's jobs completed (seconds since the epoch), or None
    while one of them has not succeeded yet. Raises RuntimeError when one failed."""
    jobs = orthanc.get_json("/jobs?expand")
    failed = [job for job in jobs if job["State"] == "Failure"]
    if failed:
        raise RuntimeError(f"the STOW job {failed[0]['ID']} failed: "
                           f"{json.dumps(failed[0])[:500]}")
    if not jobs or any(job["State"] != "Success" for job in jobs):
        return None
    return max(parse_job_time(job["CompletionTime"]) for job in jobs)


def parse_job_time(text):
    """Return an Orthanc job time ("20261205T185441.123456", UTC) as seconds since the epoch."""
    moment = datetime.datetime.strptime(text, "%Y%m%dT%H%M%S.%f")
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def check_plugin_failures(orthanc):
    counts = orthanc.get_json("/azure-dicom/status")["Counts"]
    if counts["Failed"]:
        raise RuntimeError(f"{counts['Failed']} instances are Failed; see "
                           f"{orthanc.log_path} and /azure-dicom/instances?state=Failed")


def finish_transfer(record, dataset, confirmed, partial):
    record.confirmed = confirmed
    record.partial = partial
    record.bytes = dataset.mean_bytes * min(confirmed, dataset.count)
    if partial:
        record.note = (f"stopped after {record.seconds:.0f} s with {confirmed} of "
                       f"{dataset.count} confirmed")


def stop_all(*items):
    for item in items:
        if item is not None:
            item.stop()


def discard_storage(directory):
    """Delete the Orthanc storage folders of a finished run, and keep its logs."""
    for folder, subfolders, _ in os.walk(directory):
        if "storage" in subfolders:
            shutil.rmtree(os.path.join(folder, "storage"), ignore_errors=True)
            subfolders.remove("storage")


# The archives: data sets stored once by an Orthanc that has the plugin with "Enable": false.

def prepare_archive(context, dataset):
    """Return a storage folder in which an Orthanc stored the data set with the plugin
    disabled. The folder is reused while its data set is the same."""
    archive = os.path.join(context.work, "archives", datasets.folder_name(dataset.spec))
    marker_path = os.path.join(archive, ARCHIVE_MARKER)
    key = {"Spec": datasets.cache_key(dataset.spec), "Count": dataset.count,
           "First": dataset.files[0]["SOPInstanceUID"]}
    if os.path.exists(marker_path):
        with open(marker_path, encoding="utf-8") as text:
            if json.load(text) == key:
                return archive
    shutil.rmtree(archive, ignore_errors=True)
    os.makedirs(archive)

    directory = context.new_run_directory(f"archive-{dataset.spec.name}")
    azure = servers.plugin_section("http://127.0.0.1:1/dicom-web",
                                   os.path.join(directory, "outbox.db"), enable=False)
    source = servers.make_source(directory, "archive", plugins=[context.plugin], azure=azure,
                                 archive=archive)
    try:
        source.start()
        context.log(f"storing {dataset.count} instances of {dataset.spec.label} in the archive "
                    f"{archive} (plugin disabled)")
        store = clients.ParallelStore(source.url, dataset.paths(), PARALLEL_CLIENTS).run()
        store.check()
        stored = source.get_json("/statistics")["CountInstances"]
        if stored != dataset.count:
            raise RuntimeError(f"the archive Orthanc contains {stored} instances, expected "
                               f"{dataset.count}")
        context.log(f"stored the archive in {store.seconds:.0f} s")
    finally:
        source.stop()
    with open(marker_path, "w", encoding="utf-8") as text:
        json.dump(key, text)
    return archive


# What any back-fill from Orthanc reads first: the archive's instances with their UIDs.

LISTING_RUNS = 3


@dataclasses.dataclass
class Listing:
    """Orthanc listing an archive with its tags, in one request."""

    dataset: str
    count: int
    seconds: float = 0.0  # the fastest of LISTING_RUNS
    error: str = ""


def measure_listing(context, dataset, archive):
    """Time GET /instances?expand until the whole response is read, on a new Orthanc without
    plugins whose archive is in the page cache, and keep the fastest of LISTING_RUNS."""
    record = Listing(dataset.spec.name, dataset.count)
    directory = context.new_run_directory(f"listing-{dataset.spec.name}")
    source = None
    try:
        source = servers.make_source(os.path.join(directory, "source"), "source",
                                     archive=archive).start()
        read_into_page_cache(archive)
        durations = []
        for _ in range(LISTING_RUNS):
            started = time.monotonic()
            response = source.get("/instances?expand")
            durations.append(time.monotonic() - started)
            if response.status_code != 200:
                raise RuntimeError(f"GET /instances?expand returned {response.status_code}: "
                                   f"{response.text[:300]}")
            listed = response.json()  # parsed after the timing, which counts Orthanc's work only
            if len(listed) != dataset.count:
                raise RuntimeError(f"GET /instances?expand listed {len(listed)} instances, "
                                   f"expected {dataset.count}")
        record.seconds = min(durations)
    except (RuntimeError, AssertionError, OSError) as error:
        record.error = str(error)
    finally:
        stop_all(source)
        discard_storage(directory)
    return record


# Transfer methods.

def run_plugin_ingest(context, dataset, target):
    """Measure the plugin mirroring while Orthanc ingests the data set, from the first store
    until the last instance is confirmed."""
    record = Transfer(PLUGIN_INGEST, target.name, dataset.spec.name, dataset.count)
    directory = context.new_run_directory(f"plugin-ingest-{dataset.spec.name}")
    outbox = os.path.join(directory, "outbox.db")
    source = None
    try:
        base = target.start(os.path.join(directory, "target"))
        azure = servers.plugin_section(base, outbox)
        source = servers.make_source(os.path.join(directory, "source"), "source",
                                     plugins=[context.plugin], azure=azure).start()
        context.record_versions(source)
        read_into_page_cache(dataset.paths())
        interval = Interval(context, [source.process.pid], [target.pid]).start()
        store = clients.ParallelStore(source.url, dataset.paths(), PARALLEL_CLIENTS).start()
        confirmed, partial = wait_until(
            interval, lambda: confirmed_by_plugin(source), dataset.count,
            context.max_run_seconds, check=lambda: (store.check(), check_plugin_failures(source)))
        interval.stop()
        record.sender_peak_rss = interval.peak_rss()
        finished_at = None if partial else read_last_confirmation(outbox)
        interval.fill(record, finished_at=finished_at)
        finish_transfer(record, dataset, confirmed, partial)
        if not partial:
            store.wait().check()
            record.note = f"ingest took {store.seconds:.1f} s"
    except (RuntimeError, AssertionError, OSError, clients.StoreError) as error:
        record.error = str(error)
    finally:
        stop_all(source, target)
        discard_storage(directory)
    return record


def run_plugin_backfill(context, dataset, archive, target):
    """Measure the plugin's back-fill of an archive stored before it was enabled, from
    POST /azure-dicom/sync {"All": true} until the last instance is confirmed."""
    record = Transfer(PLUGIN_BACKFILL, target.name, dataset.spec.name, dataset.count)
    directory = context.new_run_directory(f"plugin-backfill-{dataset.spec.name}")
    outbox = os.path.join(directory, "outbox.db")
    source = None
    try:
        base = target.start(os.path.join(directory, "target"))
        azure = servers.plugin_section(base, outbox)
        source = servers.make_source(os.path.join(directory, "source"), "source",
                                     plugins=[context.plugin], azure=azure,
                                     archive=archive).start()
        read_into_page_cache(archive)
        interval = Interval(context, [source.process.pid], [target.pid]).start()
        response = source.post_json("/azure-dicom/sync", {"All": True})
        if response.status_code != 200:
            raise RuntimeError(f"POST /azure-dicom/sync returned {response.status_code}: "
                               f"{response.text[:300]}")
        confirmed, partial = wait_until(
            interval, lambda: confirmed_by_plugin(source), dataset.count,
            context.max_run_seconds, check=lambda: check_plugin_failures(source))
        interval.stop()
        record.sender_peak_rss = interval.peak_rss()
        finished_at = None if partial else read_last_confirmation(outbox)
        interval.fill(record, finished_at=finished_at)
        finish_transfer(record, dataset, confirmed, partial)
    except (RuntimeError, AssertionError, OSError) as error:
        record.error = str(error)
    finally:
        stop_all(source, target)
        discard_storage(directory)
    return record


def run_stow_job(context, dataset, archive, target):
    """Measure the DICOMweb plugin's STOW job with all studies of the archive, from its
    submission until the job succeeded and the target counts every instance."""
    record = Transfer(STOW_JOB, target.name, dataset.spec.name, dataset.count)
    directory = context.new_run_directory(f"stow-job-{dataset.spec.name}")
    source = None
    try:
        base = target.start(os.path.join(directory, "target"))
        source = servers.make_source(
            os.path.join(directory, "source"), "source", plugins=[servers.DICOMWEB_PLUGIN],
            archive=archive,
            extra={"DicomWeb": servers.dicomweb_client_section(base)}).start()
        context.record_versions(source)
        studies = source.get_json("/studies")
        read_into_page_cache(archive)
        interval = Interval(context, [source.process.pid], [target.pid]).start()
        response = source.post_json(f"/dicom-web/servers/{servers.DICOMWEB_SERVER_NAME}/stow",
                                    {"Resources": studies, "Synchronous": False})
        if response.status_code != 200:
            raise RuntimeError(f"POST .../stow returned {response.status_code}: "
                               f"{response.text[:300]}")
        job_id = response.json()["ID"]

        def read_job():
            job = source.get_json(f"/jobs/{job_id}")
            if job["State"] == "Failure":
                raise RuntimeError(f"the STOW job failed: {json.dumps(job)[:500]}")
            return job

        def count_when_done():
            return target.count() if read_job()["State"] == "Success" else 0

        confirmed, partial = wait_until(interval, count_when_done, dataset.count,
                                        context.max_run_seconds)
        interval.stop()
        if partial:
            confirmed = target.count()
        record.sender_peak_rss = interval.peak_rss()
        # The job succeeds once the target has responded to its last request.
        finished_at = None if partial else parse_job_time(read_job()["CompletionTime"])
        interval.fill(record, finished_at=finished_at)
        finish_transfer(record, dataset, confirmed, partial)
    except (RuntimeError, AssertionError, OSError) as error:
        record.error = str(error)
    finally:
        stop_all(source, target)
        discard_storage(directory)
    return record


# Lua per instance sends a few instances per second at a steady rate, so its runs stop after
# this long and its rate comes from the instances confirmed by then.
LUA_PER_INSTANCE_SECONDS = 60


def run_lua(context, dataset, target, stable):
    """Measure Lua auto-routing while Orthanc ingests, per instance or per stable study, from
    the first store until the target counts every instance and the last STOW job completed."""
    method = LUA_STABLE if stable else LUA_INSTANCE
    record = Transfer(method, target.name, dataset.spec.name, dataset.count)
    label = "stable" if stable else "instance"
    directory = context.new_run_directory(f"lua-{label}-{dataset.spec.name}")
    source = None
    try:
        base = target.start(os.path.join(directory, "target"))
        script = os.path.join(directory, "route.lua")
        template = LUA_STABLE_STUDY if stable else LUA_PER_INSTANCE
        with open(script, "w", encoding="utf-8") as output:
            output.write(template.format(server=servers.DICOMWEB_SERVER_NAME))
        source = servers.make_source(
            os.path.join(directory, "source"), "source", plugins=[servers.DICOMWEB_PLUGIN],
            extra={"DicomWeb": servers.dicomweb_client_section(base),
                   "LuaScripts": [script],
                   "JobsHistorySize": LUA_JOBS_HISTORY_SIZE}).start()
        read_into_page_cache(dataset.paths())
        interval = Interval(context, [source.process.pid], [target.pid]).start()
        store = clients.ParallelStore(source.url, dataset.paths(), PARALLEL_CLIENTS).start()
        limit = context.max_run_seconds if stable else min(context.max_run_seconds,
                                                             LUA_PER_INSTANCE_SECONDS)
        def count_when_jobs_done():
            # The jobs are read only once the target has every instance, and a run ends when
            # the last job completes: after the target responded to its last request.
            count = target.count()
            if count < dataset.count or read_last_job_completion(source) is not None:
                return count
            return 0

        confirmed, partial = wait_until(interval, count_when_jobs_done, dataset.count, limit,
                                        check=store.check)
        interval.stop()
        if partial:
            confirmed = target.count()
        record.sender_peak_rss = interval.peak_rss()
        finished_at = None if partial else read_last_job_completion(source)
        interval.fill(record, finished_at=finished_at)
        finish_transfer(record, dataset, confirmed, partial)
    except (RuntimeError, AssertionError, OSError, clients.StoreError) as error:
        record.error = str(error)
    finally:
        stop_all(source, target)
        discard_storage(directory)
    return record


def run_curl(context, dataset, bodies, target):
    """Measure the upper bound: prebuilt STOW-RS bodies posted straight to the target over
    PARALLEL_CLIENTS connections, from the first request until the last response."""
    record = Transfer(CURL, target.name, dataset.spec.name, dataset.count)
    directory = context.new_run_directory(f"curl-{dataset.spec.name}")
    try:
        base = target.start(os.path.join(directory, "target"))
        upload = clients.CurlUpload(base + "/studies", bodies, datasets.body_content_type(),
                                    PARALLEL_CLIENTS, directory)
        read_into_page_cache(bodies)
        interval = Interval(context, [], [target.pid]).start()
        upload.run()
        interval.stop()
        confirmed = target.count()
        interval.fill(record, extra_cpu=upload.cpu_seconds)
        record.sender_peak_rss = upload.peak_rss
        finish_transfer(record, dataset, confirmed, False)
        if confirmed < dataset.count:
            record.error = f"the target counts {confirmed} of {dataset.count} instances"
    except (RuntimeError, AssertionError, OSError) as error:
        record.error = str(error)
    finally:
        stop_all(target)
        discard_storage(directory)
    return record


# Ingestion rate of Orthanc with and without the plugin.

@dataclasses.dataclass
class Ingestion:
    """Orthanc's ingestion of a data set by one protocol, with or without the plugin."""

    protocol: str
    dataset: str
    with_plugin: bool
    count: int
    seconds: float = 0.0
    bytes: int = 0
    orthanc_cpu: float = 0.0
    mirrored_at_end: int = 0  # instances the plugin had confirmed when the last store returned
    busy_percent: float = 0.0
    others_percent: float = 0.0
    error: str = ""

    @property
    def instances_per_second(self):
        return self.count / self.seconds if not self.error and self.seconds else None

    @property
    def megabytes_per_second(self):
        return self.bytes / 1e6 / self.seconds if not self.error and self.seconds else None


def run_ingestion(context, dataset, protocol, with_plugin):
    """Measure how fast a new Orthanc stores the data set by REST or by C-STORE.

    REST uses PARALLEL_CLIENTS clients, C-STORE one storescu association. With with_plugin,
    Orthanc has the plugin, which sends to the null sink meanwhile.
    """
    record = Ingestion(protocol, dataset.spec.name, with_plugin, dataset.count,
                       bytes=dataset.total_bytes)
    label = "plugin" if with_plugin else "bare"
    directory = context.new_run_directory(f"ingest-{protocol}-{label}-{dataset.spec.name}")
    source = None
    target = servers.SinkTarget(context.sink)
    try:
        plugins, azure = [], None
        if with_plugin:
            base = target.start(None)
            plugins = [context.plugin]
            azure = servers.plugin_section(base, os.path.join(directory, "outbox.db"))
        source = servers.make_source(os.path.join(directory, "source"), "source",
                                     plugins=plugins, azure=azure,
                                     dicom_server=protocol == "C-STORE").start()
        sink_pid = context.sink.pid if with_plugin else None
        if with_plugin:
            # The goal leaves out the target's CPU, so the sink runs at idle priority and
            # takes only the CPU time that Orthanc and the store clients leave.
            processes.set_scheduling_policy(sink_pid, os.SCHED_IDLE)
        read_into_page_cache(dataset.paths())
        interval = Interval(context, [source.process.pid], [sink_pid]).start()
        extra_cpu = 0.0
        if protocol == "C-STORE":
            before = os.times()
            clients.run_storescu(source.dicom_port, dataset.directory,
                                 servers.DCMTK_ENVIRONMENT)
            after = os.times()
            extra_cpu = (after.children_user - before.children_user +
                         after.children_system - before.children_system)
        else:
            clients.ParallelStore(source.url, dataset.paths(), PARALLEL_CLIENTS).run().check()
        interval.stop()
        if with_plugin:
            record.mirrored_at_end = confirmed_by_plugin(source)
        stored = source.get_json("/statistics")["CountInstances"]
        if stored != dataset.count:
            raise RuntimeError(f"Orthanc stored {stored} of {dataset.count} instances")
        record.seconds = interval.seconds
        record.orthanc_cpu = interval.sender_cpu
        record.busy_percent = interval.load.busy_percent
        ours = interval.sender_cpu + interval.receiver_cpu + interval.own_cpu + extra_cpu
        record.others_percent = max(0.0, interval.load.busy_percent -
                                    100.0 * ours / (interval.seconds * context.cpus))
    except (RuntimeError, AssertionError, OSError, clients.StoreError) as error:
        record.error = str(error)
    except subprocess.CalledProcessError as error:
        record.error = f"storescu failed with exit code {error.returncode}: {error.stderr[-300:]}"
    finally:
        stop_all(source)
        if with_plugin:
            processes.set_scheduling_policy(context.sink.pid, os.SCHED_OTHER)
        discard_storage(directory)
    return record


# Store-to-mirrored latency at a steady store rate.

@dataclasses.dataclass
class Latency:
    """Seconds from sending POST /instances until the plugin's SentAt, at a steady rate."""

    target: str
    dataset: str
    rate: float
    count: int
    achieved_rate: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    maximum: float = 0.0
    busy_percent: float = 0.0
    error: str = ""


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_latency(context, dataset, target, count, rate):
    """Store count instances at a steady rate and measure each one's store-to-mirrored time."""
    record = Latency(target.name, dataset.spec.name, rate, count)
    directory = context.new_run_directory(f"latency-{dataset.spec.name}")
    source = None
    try:
        base = target.start(os.path.join(directory, "target"))
        azure = servers.plugin_section(base, os.path.join(directory, "outbox.db"))
        source = servers.make_source(os.path.join(directory, "source"), "source",
                                     plugins=[context.plugin], azure=azure).start()
        load = processes.MachineLoad()
        load.start()
        started = time.monotonic()
        sent_at, ids = clients.store_paced(source.url, dataset.paths()[:count], rate)
        record.achieved_rate = count / (time.monotonic() - started)
        source.wait_mirror_idle(context.max_run_seconds, expected_total=count)
        record.busy_percent = load.stop()
        latencies = []
        for instance_id, sent in zip(ids, sent_at):
            item = source.get_json(f"/azure-dicom/instances/{instance_id}")
            if item["State"] != "Mirrored" or not item.get("SentAt"):
                raise RuntimeError(f"instance {instance_id} is {item['State']}, expected "
                                   "Mirrored with SentAt")
            latencies.append(parse_time(item["SentAt"]) - sent)
        latencies.sort()
        record.p50 = statistics.median(latencies)
        record.p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        record.maximum = latencies[-1]
    except (RuntimeError, AssertionError, OSError, clients.StoreError) as error:
        record.error = str(error)
    finally:
        stop_all(source, target)
        discard_storage(directory)
    return record


# Memory with a backlog, and the time to queue a back-fill.

@dataclasses.dataclass
class Backlog:
    """The plugin paused with pending instances queued by a back-fill job."""

    pending: int
    archive_count: int
    queue_seconds: float = 0.0
    rss_before: int = 0  # after start-up, paused, nothing queued
    rss_after: int = 0  # after the job, with the backlog pending
    peak_rss: int = 0
    rss_after_restart: int = 0  # a new Orthanc process on the same outbox, still paused
    error: str = ""


def run_backlog(context, archive, archive_count, pending):
    """Queue pending instances of the archive with the plugin paused, and read the RSS."""
    record = Backlog(pending, archive_count)
    directory = context.new_run_directory(f"backlog-{pending}")
    target = servers.SinkTarget(context.sink)
    source = None
    try:
        base = target.start(None)
        azure = servers.plugin_section(base, os.path.join(directory, "outbox.db"))
        source = servers.make_source(os.path.join(directory, "source"), "source",
                                     plugins=[context.plugin], azure=azure,
                                     archive=archive).start()
        response = source.request("PUT", "/azure-dicom/settings", data=json.dumps({"Paused": True}),
                                  headers={"Content-Type": "application/json"})
        if response.status_code != 200:
            raise RuntimeError(f"PUT /azure-dicom/settings returned {response.status_code}: "
                               f"{response.text[:300]}")
        pid = source.process.pid
        record.rss_before = processes.memory_bytes(pid)["VmRSS"]
        processes.reset_peak_rss(pid)

        if pending >= archive_count:
            body = {"All": True}
        else:
            body = {"Resources": source.get_json(f"/instances?since=0&limit={pending}")}
        started = time.monotonic()
        response = source.post_json("/azure-dicom/sync", body)
        if response.status_code != 200:
            raise RuntimeError(f"POST /azure-dicom/sync returned {response.status_code}: "
                               f"{response.text[:300]}")
        job = source.wait_job(response.json()["ID"], JOB_TIMEOUT_SECONDS)
        record.queue_seconds = time.monotonic() - started
        if job["State"] != "Success":
            raise RuntimeError(f"the back-fill job ended with {job['State']}: {job}")
        counts = source.get_json("/azure-dicom/status")["Counts"]
        if counts["Pending"] != pending:
            raise RuntimeError(f"{counts['Pending']} instances are Pending, expected {pending}")
        memory = processes.memory_bytes(pid)
        record.rss_after = memory["VmRSS"]
        record.peak_rss = memory["VmHWM"]

        source.stop()
        source.start()
        if source.get_json("/azure-dicom/status")["Counts"]["Pending"] != pending:
            raise RuntimeError("the number of Pending instances changed when Orthanc restarted, "
                               f"expected {pending}")
        record.rss_after_restart = processes.memory_bytes(source.process.pid)["VmRSS"]
    except (RuntimeError, AssertionError, OSError) as error:
        record.error = str(error)
    finally:
        stop_all(source)
        discard_storage(directory)
    return record
