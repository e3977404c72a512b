"""Kill -9 the source Orthanc while it ingests and mirrors, restart it, and check the result.

The fake Azure DICOM service counts how many times it created each SOP instance, so the test
can check the two promises of the outbox: every instance that Orthanc stored reaches the
service, and none is created there twice. An instance sent again after the crash and rejected
with 45070 (already exists) is AlreadyPresent, which is not a second creation.
"""

import os
import sys
import threading

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

STUDIES = 10
SERIES_PER_STUDY = 3
INSTANCES_PER_SERIES = 10
INSTANCE_BYTES = 4 * 1024
CRASH_FRACTIONS = (0.3, 0.6)
# A slow service keeps requests in flight when the process dies.
SERVICE_DELAY_SECONDS = 0.1
UPLOAD_TIMEOUT_SECONDS = 120
# Long enough for the leases of items that were Sending at the crash to expire.
RECOVERY_TIMEOUT_SECONDS = 400
REQUEST_TIMEOUT_SECONDS = 10


class Uploader(threading.Thread):
    """Upload instances in the background until done or until Orthanc stops responding."""

    def __init__(self, url, instances, indexes):
        super().__init__(daemon=True)
        self.url = url
        self.instances = instances
        self.pending = list(indexes)
        self.stored = set()
        self.lock = threading.Lock()

    def stored_count(self):
        with self.lock:
            return len(self.stored)

    def run(self):
        with requests.Session() as session:
            for index in self.pending:
                try:
                    response = session.post(self.url + "/instances", data=self.instances[index],
                                            headers={"Content-Type": "application/dicom"},
                                            timeout=harness.REQUEST_TIMEOUT_SECONDS)
                except requests.RequestException:
                    return
                if response.status_code != 200:
                    return
                with self.lock:
                    self.stored.add(index)


class CrashResumeTest(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.fake = fake_azure.FakeAzure(require_auth=False).start()
        self.addCleanup(self.fake.stop)
        self.fake.set_delay(SERVICE_DELAY_SECONDS)

    def test_kill_during_ingest(self):
        section = harness.azure_section(self.fake.url, "v2", MaxInstancesPerRequest=10,
                                        RequestTimeoutSeconds=10)
        source = self.add_orthanc(harness.source_orthanc(self.path("source"), section)).start()
        instances = []
        for _ in range(STUDIES):
            instances += harness.make_study(SERIES_PER_STUDY, INSTANCES_PER_SERIES,
                                            INSTANCE_BYTES)
        all_uids = {harness.sop_uid_of(data) for data in instances}
        stored = set()

        for fraction in CRASH_FRACTIONS:
            remaining = [index for index in range(len(instances)) if index not in stored]
            uploader = Uploader(source.url, instances, remaining)
            uploader.start()
            crash_at = int(len(instances) * fraction) - len(stored)
            harness.wait_for(lambda: uploader.stored_count() >= crash_at, UPLOAD_TIMEOUT_SECONDS,
                             f"{crash_at} uploads before the crash")
            harness.wait_for(lambda: self.fake.stow_requests(), UPLOAD_TIMEOUT_SECONDS,
                             "the plugin to send before the crash")
            self.assertTrue(source.is_running(), "Orthanc ended before the crash")
            before = source.counts()
            source.kill()
            uploader.join(timeout=REQUEST_TIMEOUT_SECONDS)
            self.assertFalse(uploader.is_alive(), "the uploader did not stop after the crash")
            stored |= uploader.stored
            source.start()
            print(f"crash at {fraction}: uploaded {len(stored)}, counts before {before}, "
                  f"after restart {source.counts()}", flush=True)

        remaining = [index for index in range(len(instances)) if index not in stored]
        uploader = Uploader(source.url, instances, remaining)
        uploader.run()
        self.assertEqual(len(uploader.stored), len(remaining), "uploads after the restarts failed")

        source_uids = harness.list_sop_uids(source)
        self.assertEqual(source_uids, all_uids)
        status = source.wait_mirror_idle(RECOVERY_TIMEOUT_SECONDS, expected_total=len(all_uids))

        stored_at_fake = self.fake.stored_uids()
        self.assertEqual(stored_at_fake, source_uids,
                         f"missing at the service: {sorted(source_uids - stored_at_fake)[:10]}")
        created = self.fake.creation_counts()
        created_twice = sorted(uid for uid, count in created.items() if count > 1)
        self.assertEqual(created_twice, [])
        self.assertEqual(set(created), source_uids)

        counts = status["Counts"]
        self.assertEqual(counts["Mirrored"] + counts["AlreadyPresent"], len(all_uids), counts)
        self.assertEqual(counts["Failed"], 0, counts)
        items = harness.list_outbox(source)
        self.assertEqual(len(items), len(all_uids))
        self.assertEqual({item["SOPInstanceUID"] for item in items}, source_uids)
        for item in items:
            if item["State"] == "AlreadyPresent":
                self.assertEqual(item["FailureReason"], fake_azure.REASON_ALREADY_EXISTS, item)

    def test_kill_during_backfill(self):
        section = harness.azure_section(self.fake.url, "v2", Enable=False,
                                        MaxInstancesPerRequest=10, RequestTimeoutSeconds=10)
        source = self.add_orthanc(harness.source_orthanc(self.path("source"), section)).start()
        instances = []
        for _ in range(STUDIES):
            instances += harness.make_study(SERIES_PER_STUDY, INSTANCES_PER_SERIES,
                                            INSTANCE_BYTES)
        harness.upload_all(source, instances)
        all_uids = {harness.sop_uid_of(data) for data in instances}
        source.stop()
        source.azure["Enable"] = True
        source.start()

        response = source.post_json("/azure-dicom/sync", {"All": True})
        self.assertEqual(response.status_code, 200, response.text)
        harness.wait_for(lambda: self.fake.stow_requests(), UPLOAD_TIMEOUT_SECONDS,
                         "the back-fill to start sending")
        source.kill()
        source.start()

        # Orthanc keeps no job across a restart (SaveJobs is false), so the operator runs the
        # back-fill again. Instances queued by the first run must not be queued or created twice.
        response = source.post_json("/azure-dicom/sync", {"All": True})
        self.assertEqual(response.status_code, 200, response.text)
        job = source.wait_job(response.json()["ID"], UPLOAD_TIMEOUT_SECONDS)
        self.assertEqual(job["State"], "Success")
        status = source.wait_mirror_idle(RECOVERY_TIMEOUT_SECONDS, expected_total=len(all_uids))

        self.assertEqual(self.fake.stored_uids(), all_uids)
        created_twice = sorted(uid for uid, count in self.fake.creation_counts().items()
                               if count > 1)
        self.assertEqual(created_twice, [])
        items = harness.list_outbox(source)
        self.assertEqual(len(items), len(all_uids))
        counts = status["Counts"]
        self.assertEqual(counts["Mirrored"] + counts["AlreadyPresent"], len(all_uids), counts)
        self.assertEqual(counts["Failed"], 0, counts)


if __name__ == "__main__":
    harness.main()
