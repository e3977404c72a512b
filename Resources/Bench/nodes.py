"""The nodes section: mirroring with one Orthanc node and with two over one PostgreSQL.

Every run starts its own PostgreSQL server (UnitTests/Integration/postgresql_server.py), with
the Orthanc index in one database and the plugin's outbox in another. One or two Orthanc nodes
run over it with Debian's orthanc-postgresql index plugin, the mirror plugin and a shared
storage folder. The back-fill runs on an archive that an Orthanc stored once into such a
server: each run starts on a copy of its PostgreSQL data folder and on its storage folder.
"""

import dataclasses
import json
import os
import shutil
import subprocess

import clients
import datasets
import report
import scenarios
import servers

import postgresql_server  # UnitTests/Integration, on the path that servers.py sets

BACKFILL = "back-fill"
INGEST = "while ingesting"
NODE_COUNTS = (1, 2)
INDEX_DATABASE = "orthanc_index"
OUTBOX_DATABASE = "azure_dicom_outbox"
ARCHIVE_MARKER = "archive.json"
# The data sets of the section, keys of bench.py's specifications.
DATASETS = (report.CT, report.SMALL)


@dataclasses.dataclass
class NodesRun:
    """One mirroring run with a number of nodes over one PostgreSQL server."""

    mode: str  # BACKFILL or INGEST
    nodes: int
    target: str
    dataset: str
    expected: int
    confirmed: int = 0
    seconds: float = 0.0
    bytes: float = 0.0  # bytes of the confirmed instances' files
    sent_by_node: dict = dataclasses.field(default_factory=dict)  # "Sent" of each node's entry
    nodes_cpu: float = 0.0  # user and system CPU seconds of the Orthanc nodes
    busy_percent: float = 0.0
    partial: bool = False
    error: str = ""
    note: str = ""

    @property
    def ok(self):
        return not self.error and self.seconds > 0 and self.confirmed > 0

    @property
    def instances_per_second(self):
        return self.confirmed / self.seconds if self.ok else None

    @property
    def megabytes_per_second(self):
        return self.bytes / 1e6 / self.seconds if self.ok else None


def node_name(index):
    return f"node-{index + 1}"


def start_nodes(context, directory, server, storage, base, count):
    """Start count Orthanc nodes with the plugin over server; return them in order."""
    nodes = []
    for index in range(count):
        name = node_name(index)
        azure = servers.plugin_section(base, server.url(OUTBOX_DATABASE))
        azure["NodeName"] = name
        node = postgresql_server.orthanc_node(
            os.path.join(directory, name), name, server, INDEX_DATABASE, storage, azure=azure,
            plugins=[context.plugin], extra=servers.SOURCE_SETTINGS)
        nodes.append(node)
        node.start()
    return nodes


def copy_folder(source, destination):
    """Copy a folder with its owners and modes (cp -a), as PostgreSQL's data folder needs."""
    subprocess.run(["cp", "-a", source, destination], check=True)


def prepare_archive(context, dataset):
    """Return (folder, password): the data set stored by an Orthanc over a PostgreSQL index.

    The folder has postgresql/ (the stopped server, with an empty outbox database) and
    storage/. It is reused while its data set is the same.
    """
    archive = os.path.join(context.work, "archives",
                           f"postgresql-{datasets.folder_name(dataset.spec)}")
    marker_path = os.path.join(archive, ARCHIVE_MARKER)
    key = {"Spec": datasets.cache_key(dataset.spec), "Count": dataset.count,
           "First": dataset.files[0]["SOPInstanceUID"]}
    if os.path.exists(marker_path):
        with open(marker_path, encoding="utf-8") as text:
            marker = json.load(text)
        if marker["Key"] == key:
            return archive, marker["Password"]
    shutil.rmtree(archive, ignore_errors=True)
    os.makedirs(archive)

    server = postgresql_server.PostgreSQLServer(os.path.join(archive, "postgresql"))
    directory = context.new_run_directory(f"archive-postgresql-{dataset.spec.name}")
    source = None
    try:
        server.start(databases=(INDEX_DATABASE, OUTBOX_DATABASE))
        # The node's configuration names the server's port, known once it started.
        source = postgresql_server.orthanc_node(directory, "archive", server, INDEX_DATABASE,
                                                os.path.join(archive, "storage"),
                                                extra=servers.SOURCE_SETTINGS)
        source.start()
        context.log(f"storing {dataset.count} instances of {dataset.spec.label} in the "
                    f"PostgreSQL archive {archive}")
        store = clients.ParallelStore(source.url, dataset.paths(),
                                      scenarios.PARALLEL_CLIENTS).run()
        store.check()
        stored = source.get_json("/statistics")["CountInstances"]
        if stored != dataset.count:
            raise RuntimeError(f"the archive Orthanc contains {stored} instances, expected "
                               f"{dataset.count}")
        context.log(f"stored the archive in {store.seconds:.0f} s")
    finally:
        scenarios.stop_all(source, server)
    with open(marker_path, "w", encoding="utf-8") as text:
        json.dump({"Key": key, "Password": server.password}, text)
    return archive, server.password


def read_sent_by_node(node):
    status = node.get_json("/azure-dicom/status")
    return {entry["Name"]: entry["Sent"] for entry in status.get("Nodes", [])}


def run_nodes(context, mode, count, dataset, target, archive=None, password=None):
    """Measure one mode with count nodes, from the back-fill's POST /azure-dicom/sync or the
    first store until the shared outbox counts every instance Mirrored or AlreadyPresent."""
    record = NodesRun(mode, count, target.name, dataset.spec.name, dataset.count)
    label = "backfill" if mode == BACKFILL else "ingest"
    directory = context.new_run_directory(f"nodes-{count}-{label}-{dataset.spec.name}")
    server = None
    nodes = []
    try:
        base = target.start(os.path.join(directory, "target"))
        server_directory = os.path.join(directory, "postgresql")
        if mode == BACKFILL:
            copy_folder(os.path.join(archive, "postgresql"), server_directory)
            storage = os.path.join(archive, "storage")
        else:
            storage = os.path.join(directory, "storage")
        server = postgresql_server.PostgreSQLServer(server_directory, password=password)
        server.start(databases=(INDEX_DATABASE, OUTBOX_DATABASE))
        nodes = start_nodes(context, directory, server, storage, base, count)
        context.record_versions(nodes[0])
        pids = [node.process.pid for node in nodes]
        interval = scenarios.Interval(context, pids, [target.pid]).start()
        stores = []
        if mode == BACKFILL:
            response = nodes[0].post_json("/azure-dicom/sync", {"All": True})
            if response.status_code != 200:
                raise RuntimeError(f"POST /azure-dicom/sync returned {response.status_code}: "
                                   f"{response.text[:300]}")
        else:
            # The clients are split between the nodes. Each node stores one contiguous share
            # of the files, which are in study order.
            paths = dataset.paths()
            share = (len(paths) + count - 1) // count
            for index, node in enumerate(nodes):
                stores.append(clients.ParallelStore(
                    node.url, paths[index * share:(index + 1) * share],
                    max(1, scenarios.PARALLEL_CLIENTS // count)).start())

        def check():
            for store in stores:
                store.check()
            scenarios.check_plugin_failures(nodes[0])

        confirmed, partial = scenarios.wait_until(
            interval, lambda: scenarios.confirmed_by_plugin(nodes[0]), dataset.count,
            context.max_run_seconds, check=check)
        interval.stop()
        record.nodes_cpu = interval.sender_cpu
        record.busy_percent = interval.load.busy_percent
        record.seconds = interval.seconds
        scenarios.finish_transfer(record, dataset, confirmed, partial)
        record.sent_by_node = read_sent_by_node(nodes[0])
    except (RuntimeError, AssertionError, OSError, KeyError, clients.StoreError,
            subprocess.CalledProcessError) as error:
        record.error = str(error) or repr(error)
    finally:
        scenarios.stop_all(*nodes, server, target)
        scenarios.discard_storage(directory)
        if server is not None:
            server.remove()
    return record


def run_section(context, results, data, sink, log):
    """Run both modes with one and two nodes, to the Orthanc target and the null sink."""
    for key in DATASETS:
        dataset = data[key]
        archive, password = prepare_archive(context, dataset)
        for target in (servers.OrthancTarget(), servers.SinkTarget(sink)):
            for mode in (BACKFILL, INGEST):
                for count in NODE_COUNTS:
                    record = run_nodes(context, mode, count, dataset, target, archive,
                                       password if mode == BACKFILL else None)
                    results.nodes.append(record)
                    rate = record.instances_per_second
                    text = record.error or (f"{rate:,.1f} instances/s in "
                                            f"{record.seconds:.1f} s, sent by node "
                                            f"{record.sent_by_node} {record.note}")
                    log(f"  {dataset.spec.label}, {target.name}, {mode}, {count} "
                        f"node{'s' if count > 1 else ''}: {text}")


def find_run(results, mode, count, target, dataset):
    for record in results.nodes:
        if (record.mode, record.nodes, record.target, record.dataset) == \
                (mode, count, target, dataset):
            return record
    return None


def nodes_table(results):
    """Return the section's table, with the two-node rate divided by the one-node rate."""
    header = ["data set", "target", "mirroring", "nodes", "instances", "seconds",
              "instances/s", "MB/s", "nodes' CPU s/GB", "sent by node", "two ÷ one",
              "machine busy %", "note"]
    rows = []
    for record in results.nodes:
        ratio = ""
        if record.nodes == 2:
            single = find_run(results, record.mode, 1, record.target, record.dataset)
            one = single.instances_per_second if single else None
            two = record.instances_per_second
            ratio = report.number(two / one if one and two else None, 2)
        cpu = record.nodes_cpu / (record.bytes / 1e9) if record.ok and record.bytes else None
        sent = ", ".join(f"{name} {value:,}" for name, value in
                         sorted(record.sent_by_node.items()))
        note = (record.error or record.note).replace("|", "/").replace("\n", " ")[:200]
        rows.append([results.label(record.dataset), record.target, record.mode,
                     record.nodes, f"{record.confirmed:,} of {record.expected:,}",
                     report.number(record.seconds), report.number(record.instances_per_second),
                     report.number(record.megabytes_per_second), report.number(cpu), sent,
                     ratio, f"{record.busy_percent:.0f}", note])
    return report.table(header, rows)


def describe_method():
    """Return the section's part of the Method text."""
    client_count = scenarios.PARALLEL_CLIENTS
    connections = postgresql_server.MAX_CONNECTIONS
    return f"""\
### One node and two nodes over PostgreSQL

Each run starts a new PostgreSQL 15 server on loopback (Debian's package, default settings
but `max_connections` {connections}), with the Orthanc index in one database and the plugin's
outbox in another (`"Database": "postgresql://..."`), and one or two Orthanc nodes. Each node
has Debian's orthanc-postgresql index plugin (`"Lock": false`), the mirror plugin with its own
`NodeName` and the settings above, and the same storage folder.

- **back-fill**: an Orthanc stored the data set once into such a server, without the mirror
  plugin. Each run starts on a copy of that server's data folder and on its storage folder,
  and measures from `POST /azure-dicom/sync {{"All": true}}` on the first node until the shared
  outbox counts every instance `Mirrored` or `AlreadyPresent`.
- **while ingesting**: {client_count} REST clients store the data set into an empty index, split
  between the nodes: with two nodes, two clients per node, each node storing one half of the
  files in study order. Measured from the first store until every instance is confirmed, as
  above.

"sent by node" is `Sent` of each node's entry in `Nodes` of `GET /azure-dicom/status`, and
"two ÷ one" divides the rate with two nodes by the rate with one. Both nodes, PostgreSQL and
the target share the one machine, so the ratio shows what a second node costs or brings on
these CPUs, not how the plugin scales over machines. "nodes' CPU s/GB" is the user and system
CPU time of the Orthanc nodes per GB sent, without PostgreSQL's.
"""
