"""The Markdown page of a benchmark run (docs/benchmarks.md by default)."""

import dataclasses
import datetime

import datasets
import nodes
import report
import scenarios
import servers
from clients import STORE_ATTEMPTS


@dataclasses.dataclass
class RunInfo:
    quick: bool
    machine: dict
    commit: str
    versions: dict
    started: datetime.datetime
    finished: datetime.datetime
    load_before: str
    load_after: str
    max_run_seconds: float
    latency_rate: float
    sections: list
    runs_in_memory: bool = False  # absent from the results of older runs


def describe_storage(runs_in_memory):
    """Return the paragraph on where the servers of the runs keep their files."""
    if not runs_in_memory:
        return """\
Every run kept its servers' storage, indexes, outboxes and logs in the work folder on disk
(`--runs-on-disk`, or not run by `Resources/bench.sh`).
"""
    return """\
Every run keeps its servers' storage and indexes (Orthanc's, PostgreSQL's and the plugin's
outbox) in memory: a tmpfs over the work folder's `runs/`, in the benchmark's own mount
namespace. The data sets and the archives stay on disk, read from the page cache. Every run
deletes its storage, and on the disk of the machine where the benchmark was first run (ext4
without a journal) the next run then stored more slowly. In a profile of Orthanc storing 20,000
files of 2 KB right after another run, 4.5 s of CPU time went to ext4's inode allocation
(`recently_deleted`, `find_inode_bit`). The first run of a benchmark stored them 15 to 34 %
faster than the later runs of the same configuration.
"""


def describe_methods(results, latency_rate, runs_in_memory):
    """Return the Method section's text."""
    ct = results.label(report.CT)
    clients = scenarios.PARALLEL_CLIENTS
    runs = scenarios.TRANSFER_RUNS
    repeat_below = scenarios.REPEATED_TRANSFER_MAX_SECONDS
    short_runs = scenarios.SHORT_TRANSFER_RUNS
    short_below = scenarios.SHORT_TRANSFER_MAX_SECONDS
    return f"""\
### Transfers

Each transfer starts new servers: an empty target (a new Orthanc with its DICOMweb plugin, or
the null sink, which runs for the whole benchmark and whose counts are taken per run) and a
new source Orthanc. Every server listens on loopback only, in a network namespace where only
loopback exists. The sources use Orthanc's defaults but for `HttpTimeout` 3600 (the DICOMweb
plugin sends a whole STOW job in one request), `StableAge` 2 and `SaveJobs` false. Before each
measurement, every run (transfers and ingestion alike) reads its input files once (the data set,
the archive or the curl bodies), so that all methods find them in the page cache, and flushes
the files that earlier runs wrote (`sync`).

{describe_storage(runs_in_memory)}
- **plugin, while ingesting**: {clients} REST clients store the data set (`POST /instances`,
  one kept-open connection each, in study order) into an Orthanc with the plugin. A store
  that Orthanc rejects with 503, or with the error 2001 that Orthanc 1.10 raises when two
  stores create the same storage folder at once, is sent again (up to
  {STORE_ATTEMPTS} times in all), in every method that stores. Measured
  from the first store until `GET /azure-dicom/status` counts every instance `Mirrored` or
  `AlreadyPresent` (polled every {scenarios.POLL_INTERVAL_SECONDS} s). The run then ends at
  the last confirmation that the outbox recorded (`sent_at`, in milliseconds), not at the
  poll that saw it, which comes up to {scenarios.POLL_INTERVAL_SECONDS} s later.
- **plugin, back-fill**: an Orthanc stored the data set once with the plugin loaded and
  `"Enable": false` (the archive). Each run starts an Orthanc on that storage folder with the
  plugin enabled and a new outbox, and measures from `POST /azure-dicom/sync {{"All": true}}`
  until every instance is confirmed, and ends at the last confirmation, as above. No run
  adds instances to the archive.
- **DICOMweb STOW job**: an Orthanc on the archive with only the DICOMweb plugin runs
  `POST /dicom-web/servers/target/stow` with all studies and `"Synchronous": false`. Measured
  from the submission until the job is `Success` and the target counts every instance,
  which ends at the job's `CompletionTime` in the same way.
- **Lua, per instance** and **Lua, on stable studies**: the same ingestion as the first
  method, into an Orthanc with the DICOMweb plugin and a Lua script. Its `OnStoredInstance`
  (or `OnStableStudy`, with `StableAge` 2) calls `RestApiPost('/dicom-web/servers/target/stow',
  ...)` with the instance (or study) and `"Synchronous": false`. Orthanc's job engine then
  runs up to `ConcurrentJobs` (default 2) STOW jobs at once, and keeps every finished job
  (`JobsHistorySize` {scenarios.LUA_JOBS_HISTORY_SIZE}). Measured from the first store until
  the target counts every instance and every job is `Success`, which ends at the last job's
  `CompletionTime`.
- **curl, {clients} connections**: the upper bound. The data set is cut into the plugin's
  batches ({servers.MAX_INSTANCES_PER_REQUEST} instances, {servers.MAX_REQUEST_SIZE_MB} MiB)
  and written as multipart/related bodies before the measurement. `xargs -P {clients}` runs
  {clients} curl processes, each posting its share of the bodies over one kept-open
  connection, without `Expect: 100-continue`. curl's rate is what the target can ingest
  where the target stores what it receives. The null sink stores nothing, so there the
  back-fill ÷ curl is shown below the goals but is not one of them.
- **Orthanc listing the archive**: a back-fill needs every instance's UIDs before it sends
  it. The STOW job takes them from Orthanc's index. The plugin reads them from the first
  bytes of each file, after one request for the file's attachment. For each data set sent to
  the null sink, a new Orthanc without plugins on the archive responds to
  `GET /instances?expand` (every instance with its UIDs, in one request)
  {scenarios.LISTING_RUNS} times. The fastest, until the whole response is read, is compared with curl's run.

The target counts instances with `GET /statistics` (Orthanc) or `GET /stats` (null sink). A
transfer that has not finished after the time limit is stopped, and its rate is computed from
the instances confirmed until then (the note says so). A transfer whose first run took less
than {repeat_below} s runs {runs} times in all, in rounds over the methods of its data set and
target. On a shared machine, a stall of a second changes the rate of a short run by more than
the margins of the goals. The methods that a goal compares (the plugin's back-fill, the STOW
job and curl; the plugin while ingesting and Lua) run {short_runs} times each when the first
runs of all of them took less than {short_below} s. The table lists every run, and the goals and the
"plugin ÷ this" column take the fastest run of each method, but for memory: the plugin's
largest peak RSS is compared with the STOW job's smallest. Beside each ratio of rates, the
goals table gives the same ratio at the median runs of both sides (of the ingestion runs
too), so that a reader sees how far the fastest runs lie from the usual ones. It decides no
goal.

Columns: MB are 10^6 bytes of DICOM files (multipart framing not counted), MiB are 2^20
bytes. "sender CPU s/GB" is the user and system CPU time of the source Orthanc (or of the curl
processes) per GB sent, and "total CPU s/GB" adds the target's (Orthanc or null sink). "sender
peak RSS" is the source Orthanc's peak resident set (VmHWM, reset when the measurement
starts) or the largest curl process's. It includes Orthanc's storage cache of recently read
and written files (`MaximumStorageCacheSize`, 128 MB by default in Orthanc 1.10), for the
plugin and the DICOMweb plugin alike. curl reads all the bodies of its share into memory when
it starts (`--data-binary @file`), so its peak RSS is about the size of its share. "plugin ÷
this" divides the plugin's rate by this row's rate on the same data set and target: the plugin
while ingesting for the Lua rows, the back-fill for the STOW job and curl rows. "machine busy
%" is the CPU use of the whole machine during the run (100 % is every CPU busy), and "others"
the part of it that the benchmark's own processes did not use: other work on the machine.

### Ingestion rate, latency and backlog

- **Ingestion rate**: a new Orthanc stores the data set by REST ({clients} clients as above)
  or by C-STORE (`storescu --scan-directories`, one association, Orthanc's default PDU size),
  with the plugin not loaded, or loaded and sending to the null sink, whose threads run under
  `SCHED_IDLE` for these runs so that the target's CPU does not count. The rate is instances
  over the time from the first store until the last store returned. Each configuration
  first runs once unmeasured, because with the storage on disk the first run of a section was
  up to 34 % faster than the later runs of the same configuration (see above). The runs then
  alternate between the two
  configurations, each run several times (the table lists every run), and each goal takes
  the best of the repeats. storescu and
  Orthanc run with `TCP_NODELAY=1`, because Debian's DCMTK 3.6.7 otherwise leaves Nagle's
  algorithm on. Each C-STORE then waits for delayed TCP acknowledgements: 100 instances of
  2 KB took 9.2 s instead of 0.44 s in a trial with Debian 12's packages.
- **Store-to-mirrored latency**: one client stores {ct} instances at a steady {latency_rate}
  stores per second into an Orthanc with the plugin. The latency of an instance is the
  plugin's `SentAt` (`GET /azure-dicom/instances/{{id}}`, the time its response was recorded)
  minus the time its `POST /instances` was sent, so it includes Orthanc's own store.
- **Backlog**: an archive of small instances stored with the plugin disabled. A new Orthanc
  with the plugin on it is paused (`PUT /azure-dicom/settings {{"Paused": true}}`), then
  `POST /azure-dicom/sync` queues the first instances (`{{"Resources": [...]}}`) or all of
  them (`{{"All": true}}`). "time to queue" runs from that POST until the job is `Success`.
  RSS is the source's VmRSS after the job, and again after a restart of Orthanc on the same
  outbox (still paused).
"""


def format_time(moment):
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def dataset_table(results):
    rows = []
    for dataset in results.datasets.values():
        spec = dataset.spec
        rows.append([spec.label, f"{dataset.count:,}", spec.studies,
                     f"{spec.rows} x {spec.columns} x {spec.frames}",
                     f"{dataset.mean_bytes / 1024:,.1f} KiB",
                     f"{dataset.total_bytes / 1e6:,.1f} MB", datasets.folder_name(spec)])
    return report.table(["data set", "instances", "studies", "pixels (rows x columns x frames)",
                         "mean file size", "total", "folder under data/"], rows)


def describe_cpu_floor():
    """Return the text above the table of CPU time of mirroring while ingesting."""
    return f"""\
The source, the target and the {scenarios.PARALLEL_CLIENTS} REST clients of a transfer share the
machine's CPUs, so a run cannot end before their CPU time divided by the number of CPUs (the
floor). The table takes the fastest run of the plugin while ingesting and of Lua on stable
studies. The clients are threads of the benchmark's own process, so that process's CPU time
counts as theirs. Other work on the machine does not count. A run near 1.00 in the last column used
every CPU for its whole length, and only less CPU work makes it faster. With the Orthanc
target, most of that work is Orthanc's own storing, in the source and in the target, which
both methods need."""


def render_tables(results, goals, cpus):
    """Return the result tables and the goals, as Markdown."""
    parts = []
    if results.transfers:
        parts += ["### Transfers", report.transfer_table(results)]
    if results.ingestions:
        parts += ["### Ingestion rate", report.ingestion_table(results)]
    if results.latencies:
        parts += ["### Store-to-mirrored latency", report.latency_table(results)]
    if results.backlogs:
        parts += ["### Backlog", report.backlog_table(results)]
    if results.nodes:
        parts += ["### One node and two nodes over PostgreSQL", nodes.nodes_table(results)]
    passed = sum(1 for goal in goals if goal.passed)
    parts += [f"### Goals ({passed} of {len(goals)} passed)", report.goals_table(goals)]
    sink_upper_bound = report.describe_sink_upper_bound(results)
    if sink_upper_bound:
        parts.append(sink_upper_bound)
    floor = report.cpu_floor_table(results, cpus)
    if floor:
        parts += ["### CPU time of mirroring while ingesting", describe_cpu_floor(), floor]
    return "\n\n".join(parts) + "\n"


def describe_other_load(results):
    """Return a sentence on the CPU that other work used during the measurements, or ""."""
    shares = [record.others_percent for record in results.transfers + results.ingestions
              if record.busy_percent > 0]
    if not shares:
        return ""
    mean = sum(shares) / len(shares)
    return (f"- other work on the machine used {mean:.0f} % of its CPUs on average during the\n"
            f"  transfers and ingestion runs (up to {max(shares):.0f} %, see \"others\" in the "
            "tables)\n")


def render(run, results, goals):
    machine = run.machine
    versions = "\n".join(f"- {name}: {version}" for name, version in sorted(run.versions.items()))
    mode = ("quick run (`--quick`: smaller data sets, one repeat); its numbers are for trying "
            "the script, not for comparison" if run.quick else "full run")
    minutes = (run.finished - run.started).total_seconds() / 60
    retry = ", ".join(f"`Retry.{key}` {value}" for key, value in servers.RETRY.items())
    settings = (f"`Workers` {servers.WORKERS}, `MaxInstancesPerRequest` "
                f"{servers.MAX_INSTANCES_PER_REQUEST}, `MaxRequestSizeMB` "
                f"{servers.MAX_REQUEST_SIZE_MB}, `RequestTimeoutSeconds` "
                f"{servers.REQUEST_TIMEOUT_SECONDS}, {retry}, `ApiVersion` "
                '`""` (a plain DICOMweb server), `Credentials` `None`')
    methods = describe_methods(results, run.latency_rate, run.runs_in_memory)
    if results.nodes:
        methods += "\n" + nodes.describe_method()
    return f"""# Benchmarks

Written by `bash Resources/bench.sh` ({mode}); sections run: {", ".join(run.sections)}.
It compares the plugin with Orthanc's own ways to send instances to a DICOMweb server. There
are two targets: an Orthanc with its DICOMweb plugin, and the benchmark's null sink
(`Resources/Bench/NullSink.cpp`). The null sink parses each part's SOP Instance UID and
responds 200 without storing anything, so the sender is what limits the rate. The servers, the
clients and the target all run on the one machine below, so the numbers depend on it and on
what else ran at the time.

## Machine and versions

- {machine["CPUs"]} CPUs ({machine["Model"]}), {machine["Memory"]} of memory,
  Linux {machine["Kernel"]}
- run from {format_time(run.started)} to {format_time(run.finished)} ({minutes:.0f} minutes);
  load average {run.load_before} before and {run.load_after} after (1, 5 and 15 minutes)
{describe_other_load(results)}- this plugin's git commit: {run.commit}
{versions}

The plugin's settings in every run: {settings}. The time limit of one transfer is
{run.max_run_seconds:.0f} s, and {min(run.max_run_seconds, scenarios.LUA_PER_INSTANCE_SECONDS):.0f} s for Lua per instance, whose rate is steady.

## Data sets

Generated with pydicom: CT Image Storage instances (Enhanced CT for the multi-frame one),
explicit VR little endian, 16-bit random pixel data.

{dataset_table(results)}

## Method

{methods}
## Results

{render_tables(results, goals, machine["CPUs"])}"""
