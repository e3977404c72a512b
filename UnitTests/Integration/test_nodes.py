"""Two Orthanc nodes over one PostgreSQL index and one PostgreSQL outbox, and a kill -9.

The test starts its own PostgreSQL server (postgresql_server.py), the fake Azure DICOM service
and two Orthanc nodes that share the index, the storage folder and the outbox. Node A starts
first, so it takes the change follower's advisory lock. Studies go in through both nodes, node
A is killed with SIGKILL while batches are in flight, node B keeps ingesting and must take over
the change log within seconds, and node A starts again. At the end, the SOP Instance UIDs at
the fake must equal those in Orthanc, and none may have been created twice. Both nodes must
have sent some, and nothing may stay Pending or Sending once the dead node's leases expired.
"""

import os
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pydicom  # noqa: E402

import fault_checks  # noqa: E402
import harness  # noqa: E402
import postgresql_server  # noqa: E402

# The outbox has a database of its own in the index's server, as a site would set it up: the
# Orthanc PostgreSQL plugin creates and upgrades the schema of the index database, and the
# plugin's tables stay out of it. The site still runs one server, with one backup.
INDEX_DATABASE = "orthanc_index"
OUTBOX_DATABASE = "azure_dicom_outbox"
NODE_A = "node-a"
NODE_B = "node-b"

STUDIES_PER_NODE = 4
SERIES_PER_STUDY = 2
INSTANCES_PER_SERIES = 10
INSTANCE_BYTES = 2048
# Node A is killed once it stored this many of its uploads (of 80).
UPLOADS_BEFORE_KILL = 40
# Each STOW-RS request waits this long at the fake, so that batches are in flight at the kill.
SERVICE_DELAY_SECONDS = 0.3
REQUEST_TIMEOUT_SECONDS = 5
LEASE_SECONDS = 8
# How long node B may take to follow the change log once node A died. A session-level advisory
# lock is released when PostgreSQL detects that node A's connection closed, so this is mostly
# the interval at which node B tries to take the lock.
FOLLOWER_TAKEOVER_SECONDS = 15
WAIT_TIMEOUT_SECONDS = 60
SOCKET_POLL_SECONDS = 0.05


def socket_inodes(pid):
    """Return the inodes of the sockets that process pid has open."""
    inodes = set()
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return inodes
    for name in names:
        try:
            target = os.readlink(os.path.join(folder, name))
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def tcp_connections(pid):
    """Return {local port: (remote port, inode)} of the TCP connections in pid's namespace."""
    connections = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}", encoding="ascii") as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    connections[local_port] = (remote_port, int(fields[9]))
        except FileNotFoundError:
            continue
    return connections


class ConnectionOwners(threading.Thread):
    """Record which node owns each client port connected to the fake, polling /proc.

    The fake logs each request's client port, and this maps the port to the node whose Orthanc
    process had that socket open. Each worker keeps its connection open, so polling every
    SOCKET_POLL_SECONDS finds nearly every connection. A request on a connection that opened
    and closed between two polls stays without an owner.
    """

    def __init__(self, fake_port, nodes):
        super().__init__(daemon=True)
        self.fake_port = fake_port
        self.nodes = nodes
        self.owners = {}  # client port: set of node names
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.wait(SOCKET_POLL_SECONDS):
            self.poll()

    def poll(self):
        for node in self.nodes:
            process = node.process
            if process is None:
                continue
            inodes = socket_inodes(process.pid)
            for local_port, (remote_port, inode) in tcp_connections(process.pid).items():
                if remote_port == self.fake_port and inode in inodes:
                    with self.lock:
                        self.owners.setdefault(local_port, set()).add(node.name)

    def owner(self, port):
        """Return the one node name seen with this client port, or None."""
        with self.lock:
            names = self.owners.get(port, set())
            return next(iter(names)) if len(names) == 1 else None

    def stop(self):
        self.stop_event.set()
        self.join(timeout=5)


class TwoNodesTest(fault_checks.FaultTestCase):
    def setUp(self):
        super().setUp()
        self.postgresql = postgresql_server.PostgreSQLServer(
            self.path("postgresql"), {"fsync": "off", "synchronous_commit": "off"})
        self.postgresql.start(databases=(INDEX_DATABASE, OUTBOX_DATABASE))

    def _finish(self):
        # The nodes stop before their database, and the folder is removed only after both.
        for orthanc in self.processes:
            orthanc.stop()
        self.postgresql.stop()
        if self._failed():
            print(f"\n----- last lines of {self.postgresql.log_path} -----\n"
                  f"{self.postgresql.tail_log()}", file=sys.stderr)
        super()._finish()

    def make_node(self, name):
        section = fault_checks.fault_section(
            self.fake, Workers=2, MaxInstancesPerRequest=5,
            RequestTimeoutSeconds=REQUEST_TIMEOUT_SECONDS, LeaseSeconds=LEASE_SECONDS,
            Database=self.postgresql.url(OUTBOX_DATABASE), NodeName=name)
        node = postgresql_server.orthanc_node(self.path(name), name, self.postgresql,
                                              INDEX_DATABASE, self.path("storage"),
                                              azure=section, plugins=[harness.plugin_path()])
        return self.add_orthanc(node)

    def nodes_by_name(self, node):
        return {entry["Name"]: entry for entry in node.status()["Nodes"]}

    def wait_queued(self, node, instance_ids, description):
        """Wait until every Orthanc ID is an outbox item, read through node."""
        def queued():
            return all(node.get(f"/azure-dicom/instances/{instance_id}").status_code == 200
                       for instance_id in instance_ids)

        harness.wait_for(queued, WAIT_TIMEOUT_SECONDS, description, describe_state=node.status)

    def upload_samples_with_patient_id(self, node):
        """Upload the pydicom samples that have a PatientID; return the SOP Instance UIDs stored.

        The Azure DICOM service, and so the fake, rejects an instance without PatientID
        (failure reason 43264), which would leave it Failed and missing at the service.
        """
        stored = []
        for sop_uid, path in harness.sample_files().items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = pydicom.dcmread(path, stop_before_pixels=True)
            if "PatientID" not in dataset:
                continue
            with open(path, "rb") as sample:
                if harness.upload(node, sample.read()) is not None:
                    stored.append(sop_uid)
        return stored

    def make_studies(self, count):
        instances = []
        for _ in range(count):
            instances += harness.make_study(SERIES_PER_STUDY, INSTANCES_PER_SERIES,
                                            INSTANCE_BYTES)
        return instances

    def test_kill_node_while_sending(self):
        node_a = self.make_node(NODE_A).start()
        self.assertEqual(node_a.status().get("Node"), NODE_A, "Node in node A's status")
        # On the outbox's first start, the follower begins after the change log's last entry
        # when it first polls, so instances stored before that poll would not be queued.
        harness.wait_for(lambda: node_a.status()["Follower"]["Sequence"] >= 0,
                         WAIT_TIMEOUT_SECONDS, "node A's follower to read its first position",
                         describe_state=node_a.status)
        first = harness.upload_all(node_a, harness.make_study(1, 5, INSTANCE_BYTES))
        self.wait_queued(node_a, first, "node A's follower to queue the first study")

        node_b = self.make_node(NODE_B).start()
        self.assertEqual(node_b.status().get("Node"), NODE_B, "Node in node B's status")
        owners = ConnectionOwners(self.fake.port, [node_a, node_b])
        owners.start()
        self.addCleanup(owners.stop)

        # Uploads through both nodes, with requests slowed down at the fake.
        self.fake.set_delay(SERVICE_DELAY_SECONDS)
        uploader_a = fault_checks.Uploader(node_a.url, self.make_studies(STUDIES_PER_NODE))
        uploader_b = fault_checks.Uploader(node_b.url, self.make_studies(STUDIES_PER_NODE))
        uploader_a.start()
        uploader_b.start()

        # Both nodes claim from the same queue before the kill, and node A has a batch in flight.
        def both_sending():
            nodes = self.nodes_by_name(node_b)
            entry_a = nodes.get(NODE_A, {})
            return (uploader_a.stored_count() >= UPLOADS_BEFORE_KILL and
                    nodes.get(NODE_B, {}).get("Sent", 0) > 0 and
                    entry_a.get("Sent", 0) > 0 and entry_a.get("Claimed", 0) > 0)

        harness.wait_for(both_sending, WAIT_TIMEOUT_SECONDS,
                         f"{UPLOADS_BEFORE_KILL} uploads through node A, both nodes to have sent "
                         "and a batch in flight at node A", describe_state=node_b.status)

        self.assertTrue(node_a.status()["Follower"]["Active"],
                        "node A, started first, does not follow the change log")
        self.assertFalse(node_b.status()["Follower"]["Active"],
                         "node B follows the change log while node A runs")
        before = node_b.status()
        node_a.kill()
        killed_at = time.monotonic()
        self.count_crash()
        uploader_a.stop()
        uploader_a.join(timeout=harness.REQUEST_TIMEOUT_SECONDS)
        self.assertFalse(uploader_a.is_alive(), "the uploader of node A did not stop")
        print(f"killed node A: counts {before['Counts']}, nodes {before['Nodes']}", flush=True)

        # Node B must follow the change log now: a study it stores must reach the outbox.
        after_kill = harness.upload_all(node_b, harness.make_study(1, 5, INSTANCE_BYTES))
        self.wait_queued(node_b, after_kill, "node B to follow the change log")
        takeover_seconds = time.monotonic() - killed_at
        print(f"node B queued a new study {takeover_seconds:.1f} s after the kill", flush=True)
        self.assertTrue(node_b.status()["Follower"]["Active"],
                        "node B queues new instances but its status says it does not follow")

        # Node B goes on ingesting, the pydicom samples too.
        samples = self.upload_samples_with_patient_id(node_b)
        self.assertGreaterEqual(len(samples), 20, "Orthanc stored too few pydicom samples")
        uploader_b.join(timeout=WAIT_TIMEOUT_SECONDS)
        self.assertFalse(uploader_b.is_alive(), "the uploads through node B did not end")
        self.assertIsNone(uploader_b.error, "uploads through node B")

        # With node A still dead, its batches stay Sending until their leases expire after
        # LEASE_SECONDS, and then node B sends them.
        expected_total = len(harness.list_instances(node_b))
        drained = node_b.wait_mirror_idle(fault_checks.DRAIN_TIMEOUT_SECONDS,
                                          expected_total=expected_total)
        self.assertEqual(drained["Counts"]["Sending"], 0,
                         f"Sending after node A's leases expired: {drained['Counts']}")
        self.assertEqual(drained["Counts"]["Pending"], 0,
                         f"Pending after node A's leases expired: {drained['Counts']}")
        dead_entry = self.nodes_by_name(node_b)[NODE_A]
        self.assertEqual(dead_entry["Claimed"], 0,
                         f"the dead node A still holds claims: {dead_entry}")
        print(f"node B drained the outbox {time.monotonic() - killed_at:.1f} s after the kill",
              flush=True)

        # Node A starts again and stores a last study.
        node_a.start()
        last = harness.upload_all(node_a, harness.make_study(1, 5, INSTANCE_BYTES))
        self.wait_queued(node_a, last, "the outbox to queue a study stored by the restarted A")
        self.assertFalse(node_a.status()["Follower"]["Active"],
                         "the restarted node A took the change log back from node B")
        self.fake.set_delay(0)

        orthanc_uids = harness.list_sop_uids(node_b)
        self.assertEqual(harness.list_sop_uids(node_a), orthanc_uids,
                         "nodes A and B list different instances from the shared index")
        # The leases of node A's batches expire after LEASE_SECONDS, then node B sends them.
        status = node_b.wait_mirror_idle(fault_checks.DRAIN_TIMEOUT_SECONDS,
                                         expected_total=len(orthanc_uids))
        owners.stop()

        stored = self.fake.stored_uids()
        created = self.fake.creation_counts()
        items = {item["SOPInstanceUID"]: item for item in harness.list_outbox(node_b)}
        missing = sorted(orthanc_uids - stored)
        self.assertEqual(missing, [], f"{len(missing)} instances missing at the service, "
                                      f"their outbox items: {[items.get(uid) for uid in missing]}")
        extra = sorted(stored - orthanc_uids)
        self.assertEqual(extra, [], f"{len(extra)} instances at the service but not in Orthanc")
        created_twice = sorted(uid for uid, count in created.items() if count > 1)
        self.assertEqual(created_twice, [], "instances created twice at the service")

        counts = status["Counts"]
        self.assertEqual(counts["Mirrored"] + counts["AlreadyPresent"], len(orthanc_uids),
                         f"Mirrored + AlreadyPresent in {counts}")
        self.assertEqual(counts["Failed"], 0, f"Failed in {counts}")
        self.assertEqual(counts["Pending"], 0, f"Pending after the leases expired: {counts}")
        self.assertEqual(counts["Sending"], 0, f"Sending after the leases expired: {counts}")
        self.assertEqual(node_a.counts(), counts, "node A's counts differ from node B's")
        for item in items.values():
            if item["State"] != "Mirrored":
                continue
            self.assertEqual(created.get(item["SOPInstanceUID"]), 1,
                             f"Mirrored but not created once at the service: {item}")

        nodes = self.nodes_by_name(node_b)
        self.assertEqual(set(nodes), {NODE_A, NODE_B}, "names in Nodes")
        self.assertGreater(nodes[NODE_A]["Sent"], 0, f"node A sent nothing: {nodes}")
        self.assertGreater(nodes[NODE_B]["Sent"], 0, f"node B sent nothing: {nodes}")

        # The fake's log, with each request's client port mapped to the node that owned it.
        instances_by_node = {NODE_A: 0, NODE_B: 0, None: 0}
        for request in self.fake.stow_requests():
            instances_by_node[owners.owner(request["ClientPort"])] += len(
                request.get("Instances", {}))
        print(f"instances per node in the fake's log: {instances_by_node}, final counts "
              f"{counts}", flush=True)
        self.assertGreater(instances_by_node[NODE_A], 0,
                           f"no STOW-RS request of node A at the fake: {instances_by_node}")
        self.assertGreater(instances_by_node[NODE_B], 0,
                           f"no STOW-RS request of node B at the fake: {instances_by_node}")

        self.assertLessEqual(takeover_seconds, FOLLOWER_TAKEOVER_SECONDS,
                             "seconds from the kill of node A until node B followed the "
                             "change log")
        fault_checks.SUMMARY["instances checked"] += len(orthanc_uids)


if __name__ == "__main__":
    fault_checks.main()
