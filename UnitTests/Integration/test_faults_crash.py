"""Kill -9 the source Orthanc five times in a row while it ingests, sends and back-fills.

The archive is stored before the plugin's first start (Orthanc runs without it), so only a
back-fill (POST /azure-dicom/sync {"All": true}) queues it. The test then kills Orthanc while
uploads go on, while requests are in flight at a slow fake, and while back-fill jobs run,
restarting it each time, and ends with the shared check of fault_checks.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fault_checks  # noqa: E402
import harness  # noqa: E402

# The back-fill job queues 500 instances per step (SyncJob.h), so an archive of 1200 takes
# three steps, and the job can be killed between two of them.
ARCHIVE_STUDIES = 8
ARCHIVE_INSTANCES_PER_SERIES = 50
NEW_STUDIES = 6
SERIES_PER_STUDY = 3
INSTANCES_PER_SERIES = 15
INSTANCE_BYTES = 2048
# Each STOW-RS request waits this long at the fake, so that requests are in flight at a kill.
SERVICE_DELAY_SECONDS = 0.3
# Two requests stall this long at the fake, so that a batch is in flight at the second kill.
STALL_SECONDS = 3
REQUEST_TIMEOUT_SECONDS = 5
LEASE_SECONDS = 8
WAIT_TIMEOUT_SECONDS = 60


class CrashFaultsTest(fault_checks.FaultTestCase):
    def make_instances(self, studies, per_series=INSTANCES_PER_SERIES):
        instances = []
        for _ in range(studies):
            instances += harness.make_study(SERIES_PER_STUDY, per_series, INSTANCE_BYTES)
        return instances

    def kill_and_restart(self, source, moment):
        """Kill Orthanc with SIGKILL, start it again and print the counts on both sides."""
        self.assertTrue(source.is_running(), f"Orthanc ended before the kill {moment}")
        before = source.counts()
        source.kill()
        self.count_crash()
        source.start()
        print(f"kill {moment}: counts before {before}, after the restart {source.counts()}",
              flush=True)

    def start_backfill(self, source):
        response = source.post_json("/azure-dicom/sync", {"All": True})
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()["ID"]

    def upload_until(self, source, instances, count):
        """Upload instances in the background; return the uploader once count were stored."""
        uploader = fault_checks.Uploader(source.url, instances)
        uploader.start()
        harness.wait_for(lambda: uploader.stored_count() >= count or not uploader.is_alive(),
                         WAIT_TIMEOUT_SECONDS, f"{count} uploads")
        self.assertIsNone(uploader.error)
        return uploader

    def finish_uploads(self, uploader):
        uploader.stop()
        uploader.join(timeout=harness.REQUEST_TIMEOUT_SECONDS)
        self.assertFalse(uploader.is_alive(), "the uploader did not stop after the kill")
        return uploader.stored

    def test_kill_five_times(self):
        section = fault_checks.fault_section(self.fake, Workers=2, MaxInstancesPerRequest=5,
                                             RequestTimeoutSeconds=REQUEST_TIMEOUT_SECONDS,
                                             LeaseSeconds=LEASE_SECONDS)
        source = harness.source_orthanc(self.path("source"), section)
        # Orthanc without the plugin, until the archive is stored.
        source.plugins = []
        self.add_orthanc(source).start()
        archive = self.make_instances(ARCHIVE_STUDIES, ARCHIVE_INSTANCES_PER_SERIES)
        harness.upload_all(source, archive)
        source.stop()
        source.plugins = [harness.plugin_path()]
        source.start()
        self.assertEqual(sum(source.counts().values()), 0,
                         "the plugin queued instances stored before its first start")

        self.fake.set_delay(SERVICE_DELAY_SECONDS)
        new_instances = self.make_instances(NEW_STUDIES)
        uploaded = set()

        # 1: while ingesting. The uploads stop with the kill, and the rest go later.
        uploader = self.upload_until(source, new_instances, 30)
        source.kill()
        self.count_crash()
        uploaded.update(self.finish_uploads(uploader))
        source.start()

        # 2: while sending, with requests stalled at the fake.
        self.fake.delay_next(STALL_SECONDS, count=2)
        harness.wait_for(lambda: source.counts().get("Sending", 0) > 0, WAIT_TIMEOUT_SECONDS,
                         "a batch in flight", describe_state=source.status)
        self.kill_and_restart(source, "while sending")

        # 3: while a back-fill job runs, after its first step queued part of the archive.
        queued_before = sum(source.counts().values())
        job = self.start_backfill(source)
        harness.wait_for(lambda: sum(source.counts().values()) > queued_before,
                         WAIT_TIMEOUT_SECONDS, "the back-fill's first step", interval=0.02)
        job_state = source.get_json("/jobs/" + job)["State"]
        self.kill_and_restart(source, f"during the back-fill (job {job_state})")
        self.assertEqual(job_state, "Running")

        # 4: during the next back-fill, with uploads and requests in flight.
        remaining = [data for data in new_instances if harness.sop_uid_of(data) not in uploaded]
        uploader = self.upload_until(source, remaining, 20)
        self.start_backfill(source)
        harness.wait_for(lambda: source.counts().get("Sending", 0) > 0, WAIT_TIMEOUT_SECONDS,
                         "a batch in flight", describe_state=source.status)
        source.kill()
        self.count_crash()
        uploaded.update(self.finish_uploads(uploader))
        source.start()

        # 5: while ingesting again, just after the restart.
        remaining = [data for data in new_instances if harness.sop_uid_of(data) not in uploaded]
        uploader = self.upload_until(source, remaining, 10)
        self.kill_and_restart(source, "while ingesting")
        uploaded.update(self.finish_uploads(uploader))

        remaining = [data for data in new_instances if harness.sop_uid_of(data) not in uploaded]
        harness.upload_all(source, remaining)
        self.fake.set_delay(0)
        job = source.wait_job(self.start_backfill(source), WAIT_TIMEOUT_SECONDS)
        self.assertEqual(job["State"], "Success", job)

        all_uids = {harness.sop_uid_of(data) for data in archive + new_instances}
        self.assertEqual(harness.list_sop_uids(source), all_uids)
        self.assert_mirror_consistent(source)


if __name__ == "__main__":
    fault_checks.main()
