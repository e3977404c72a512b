"""Mirror from an Orthanc with the plugin to a real Orthanc with the DICOMweb plugin.

The target's STOW-RS route is {target}/dicom-web/studies, so the plugin runs with ApiVersion ""
and no credentials. The data are the pydicom sample files that Orthanc stores plus generated
multi-series studies.
"""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

MIRROR_TIMEOUT_SECONDS = 180
JOB_TIMEOUT_SECONDS = 120
METRICS_TIMEOUT_SECONDS = 30
PAUSED_OBSERVATION_SECONDS = 3
SMALL_INSTANCE_BYTES = 2 * 1024
LARGE_INSTANCE_BYTES = 512 * 1024
MAPPED_INSTANCE_BYTES = 20 * 1024 * 1024
MAPPED_MIN_BYTES = 16 * 1024 * 1024  # InstanceFileReader::DIRECT_READ_MIN_BYTES
SMALL_FILE_MAX_BYTES = 64 * 1024  # StoredFileCache::MAX_FILE_BYTES
BACKFILL_PAGE_SIZE = 500  # SyncJob::INSTANCES_PER_STEP

STATUS_FIELDS = {"Enabled", "State", "Paused", "PauseReason", "Counts",
                 "OldestPendingAgeSeconds", "Throughput", "Sent", "LastError", "Destination",
                 "Credentials", "Follower"}
STATUS_GROUP_FIELDS = {
    "Throughput": {"InstancesPerSecond", "MegabytesPerSecond"},
    "Sent": {"Requests", "Instances", "Bytes"},
    "Destination": {"ServiceUrl", "ApiVersion", "Partition", "StowUrl"},
    "Credentials": {"Type", "Principal", "TokenExpiresAt", "LastError"},
    "Follower": {"Sequence"},
}
ITEM_FIELDS = {"ID", "Sequence", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
               "ParentStudy", "Size", "State", "Attempts", "StatusCode", "FailureReason",
               "WarningReason", "Message", "Destination", "QueuedAt", "UpdatedAt",
               "NextAttemptAt", "SentAt"}

# (series, instances per series, bytes per instance) of the generated studies: 106 instances.
GENERATED_STUDIES = ((4, 10, SMALL_INSTANCE_BYTES), (3, 12, SMALL_INSTANCE_BYTES),
                     (2, 13, SMALL_INSTANCE_BYTES), (1, 2, LARGE_INSTANCE_BYTES))


class MirrorDicomWebTest(harness.OrthancTestCase):
    def start_target(self):
        return self.add_orthanc(harness.target_orthanc(self.path("target"))).start()

    def make_source(self, target, enable=True, **settings):
        section = harness.azure_section(harness.dicomweb_base(target), "", Enable=enable,
                                        **settings)
        return self.add_orthanc(harness.source_orthanc(self.path("source"), section))

    def restart_enabled(self, source):
        source.stop()
        source.azure["Enable"] = True
        return source.start()

    def assert_mirrored(self, source, target, expected_count):
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=expected_count)
        source_uids = harness.list_sop_uids(source)
        target_uids = harness.list_sop_uids(target)
        self.assertEqual(len(source_uids), expected_count)
        self.assertEqual(target_uids, source_uids,
                         f"missing at the target: {sorted(source_uids - target_uids)[:10]}; "
                         f"only at the target: {sorted(target_uids - source_uids)[:10]}")
        self.assertEqual(status["Counts"]["Mirrored"], expected_count, status)
        self.assertEqual(status["Counts"]["Failed"], 0, status)
        return status

    def test_mirror_samples_and_studies(self):
        target = self.start_target()
        source = self.make_source(target).start()

        samples = harness.upload_samples(source)
        self.assertGreaterEqual(len(samples), 20, "Orthanc stored too few pydicom samples")
        generated = []
        for series, per_series, size in GENERATED_STUDIES:
            generated += harness.make_study(series, per_series, size)
        harness.upload_all(source, generated)
        expected = len(harness.list_instances(source))
        self.assertGreaterEqual(expected, len(samples) + 100)

        status = self.assert_mirrored(source, target, expected)
        self.assertTrue(status["Enabled"])
        self.assertEqual(status["State"], "Running")
        self.assertFalse(status["Paused"])
        self.assertEqual(status["Counts"]["Pending"], 0)
        self.assertEqual(status["Counts"]["Sending"], 0)
        self.assertGreaterEqual(status["Sent"]["Instances"], expected)
        self.assertGreaterEqual(status["Sent"]["Requests"], 1)
        self.assertGreater(status["Sent"]["Bytes"], 2 * LARGE_INSTANCE_BYTES)
        self.assertIsNone(status["LastError"])
        self.assertEqual(status["Destination"]["ApiVersion"], "")
        self.assertEqual(status["Destination"]["StowUrl"],
                         harness.dicomweb_base(target) + "/studies")
        self.assertEqual(status["Credentials"]["Type"], "None")

        self.assertEqual(STATUS_FIELDS - set(status), set(), "fields missing in the status")
        self.assertEqual(set(status["Counts"]), harness.ALL_STATES)
        for group, fields in STATUS_GROUP_FIELDS.items():
            self.assertEqual(fields - set(status[group]), set(), f"fields missing in {group}")
        self.assertGreater(status["Follower"]["Sequence"], 0)
        self.assertGreaterEqual(status["Throughput"]["InstancesPerSecond"], 0)
        self.assertGreaterEqual(status["Throughput"]["MegabytesPerSecond"], 0)

        items = harness.list_outbox(source)
        self.assertEqual(len(items), expected)
        self.assertEqual(ITEM_FIELDS - set(items[0]), set(), "fields missing in an item")
        self.assertEqual({item["State"] for item in items}, {"Mirrored"})
        self.assertEqual({item["SOPInstanceUID"] for item in items},
                         harness.list_sop_uids(source))
        for item in items:
            self.assertGreater(item["Size"], 0, item)
            self.assertTrue(item["SentAt"].endswith("Z"), item)
            self.assertEqual(item["Destination"], status["Destination"]["StowUrl"], item)

        # Each item's UIDs, parent study and size are those of Orthanc's index, also for the
        # samples in other encodings (implicit VR, big endian, deflated, nested sequences),
        # whose identifiers the plugin reads from the stored file or looks up in Orthanc.
        for item in items:
            instance = source.get_json(f"/instances/{item['ID']}")
            series = source.get_json(f"/series/{instance['ParentSeries']}")
            study = source.get_json(f"/studies/{series['ParentStudy']}")
            self.assertEqual(item["SOPInstanceUID"], instance["MainDicomTags"]["SOPInstanceUID"],
                             item)
            self.assertEqual(item["SeriesInstanceUID"],
                             series["MainDicomTags"]["SeriesInstanceUID"], item)
            self.assertEqual(item["StudyInstanceUID"],
                             study["MainDicomTags"]["StudyInstanceUID"], item)
            self.assertEqual(item["ParentStudy"], study["ID"], item)
            self.assertEqual(item["Size"], instance["FileSize"], item)

        # Files up to 64 KB are sent from the copies that the store callback made, the larger
        # ones from Orthanc's storage, and the target must have the same bytes either way.
        sizes = [item["Size"] for item in items]
        self.assertLessEqual(min(sizes), SMALL_FILE_MAX_BYTES)
        self.assertGreater(max(sizes), SMALL_FILE_MAX_BYTES)
        self.assert_same_files(source, target)

    def test_outbox_routes(self):
        target = self.start_target()
        source = self.make_source(target).start()
        instances = harness.make_study(2, 3)
        ids = harness.upload_all(source, instances)
        self.assert_mirrored(source, target, len(ids))

        by_id = source.get_json(f"/azure-dicom/instances/{ids[0]}")
        self.assertEqual(by_id["ID"], ids[0])
        self.assertEqual(by_id["SOPInstanceUID"], harness.sop_uid_of(instances[0]))
        self.assertEqual(by_id["State"], "Mirrored")
        by_uid = source.get_json(f"/azure-dicom/instances/{by_id['SOPInstanceUID']}")
        self.assertEqual(by_uid["ID"], ids[0])

        unknown = source.get("/azure-dicom/instances/no-such-instance")
        self.assertEqual(unknown.status_code, 404)
        self.assertIn("Message", unknown.json())

        study = source.get_json(f"/azure-dicom/studies/{by_id['ParentStudy']}")
        self.assertEqual(study["ID"], by_id["ParentStudy"])
        self.assertEqual(study["StudyInstanceUID"], by_id["StudyInstanceUID"])
        self.assertEqual(study["Instances"], len(ids))
        self.assertEqual(study["Counts"]["Mirrored"], len(ids))
        self.assertGreater(study["Bytes"], 0)

        first_page = source.get_json("/azure-dicom/instances?limit=4")
        self.assertEqual(len(first_page["Items"]), 4)
        self.assertIsNotNone(first_page["Next"])
        second_page = source.get_json(f"/azure-dicom/instances?limit=4&since={first_page['Next']}")
        self.assertEqual(len(second_page["Items"]), len(ids) - 4)
        self.assertIsNone(second_page["Next"])
        paged = {item["ID"] for item in first_page["Items"] + second_page["Items"]}
        self.assertEqual(paged, set(ids))
        self.assertEqual(source.get_json("/azure-dicom/instances?state=Failed")["Items"], [])

        mirrored = harness.wait_for(
            lambda: harness.metric_value(source, "azure_dicom_mirrored") == len(ids),
            METRICS_TIMEOUT_SECONDS, f"azure_dicom_mirrored to reach {len(ids)}",
            describe_state=lambda: source.get("/tools/metrics-prometheus").text)
        self.assertTrue(mirrored)
        self.assertEqual(harness.metric_value(source, "azure_dicom_failed"), 0)

    def test_pause_and_resume(self):
        target = self.start_target()
        source = self.make_source(target).start()
        self.assertEqual(source.post("/azure-dicom/pause").status_code, 200)
        status = source.status()
        self.assertTrue(status["Paused"])
        self.assertEqual(status["State"], "Paused")

        ids = harness.upload_all(source, harness.make_study(1, 5))
        harness.wait_for(lambda: source.counts()["Pending"] == len(ids), JOB_TIMEOUT_SECONDS,
                         "the new instances to be queued", describe_state=source.status)
        time.sleep(PAUSED_OBSERVATION_SECONDS)
        status = source.status()
        self.assertEqual(status["Counts"]["Pending"], len(ids))
        self.assertTrue(status["PauseReason"])
        self.assertGreaterEqual(status["OldestPendingAgeSeconds"], PAUSED_OBSERVATION_SECONDS - 1)
        self.assertEqual(harness.list_sop_uids(target), set())

        self.assertEqual(source.post("/azure-dicom/resume").status_code, 200)
        self.assertFalse(source.status()["Paused"])
        self.assert_mirrored(source, target, len(ids))

    def test_deleted_before_send_skipped(self):
        target = self.start_target()
        source = self.make_source(target).start()
        self.assertEqual(source.post("/azure-dicom/pause").status_code, 200)
        instances = harness.make_study(1, 4)
        ids = harness.upload_all(source, instances)
        harness.wait_for(lambda: source.counts()["Pending"] == len(ids), JOB_TIMEOUT_SECONDS,
                         "the new instances to be queued", describe_state=source.status)
        self.assertEqual(source.request("DELETE", f"/instances/{ids[0]}").status_code, 200)

        self.assertEqual(source.post("/azure-dicom/resume").status_code, 200)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))
        self.assertEqual(status["Counts"]["Skipped"], 1, status)
        self.assertEqual(status["Counts"]["Mirrored"], len(ids) - 1, status)
        self.assertEqual(status["Counts"]["Failed"], 0, status)
        self.assertEqual(source.get_json(f"/azure-dicom/instances/{ids[0]}")["State"], "Skipped")
        self.assertEqual(harness.list_sop_uids(target),
                         {harness.sop_uid_of(data) for data in instances[1:]})

    def test_backfill_sync_all(self):
        target = self.start_target()
        source = self.make_source(target, enable=False).start()
        samples = harness.upload_samples(source)
        harness.upload_all(source, harness.make_study(3, 10))
        expected = len(harness.list_instances(source))
        self.assertGreaterEqual(expected, len(samples) + 30)

        self.restart_enabled(source)
        self.assertEqual(sum(source.counts().values()), 0,
                         "instances stored while the plugin was disabled were queued "
                         "without a back-fill")
        response = source.post_json("/azure-dicom/sync", {"All": True})
        self.assertEqual(response.status_code, 200, response.text)
        job = response.json()
        self.assertEqual(job["Path"], f"/jobs/{job['ID']}")
        self.assertEqual(source.wait_job(job["ID"], JOB_TIMEOUT_SECONDS)["State"], "Success")
        self.assert_mirrored(source, target, expected)

    def test_backfill_sync_all_pages(self):
        # The back-fill lists the archive 500 instances at a time, the next page while it
        # queues the current one: 1,000 instances end on a full page, 1,001 on a page of one.
        target = self.start_target()
        source = self.make_source(target, enable=False).start()
        harness.upload_all(source, harness.make_study(4, BACKFILL_PAGE_SIZE // 2))
        self.restart_enabled(source)

        job = source.post_json("/azure-dicom/sync", {"All": True}).json()
        content = source.wait_job(job["ID"], JOB_TIMEOUT_SECONDS)
        self.assertEqual(content["State"], "Success", content)
        expected = 2 * BACKFILL_PAGE_SIZE
        self.assertEqual(content["Content"]["Processed"], expected, content)
        self.assertEqual(content["Content"]["Queued"], expected, content)
        self.assert_mirrored(source, target, expected)

        harness.upload_all(source, harness.make_study(1, 1))
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=expected + 1)
        job = source.post_json("/azure-dicom/sync", {"All": True}).json()
        content = source.wait_job(job["ID"], JOB_TIMEOUT_SECONDS)
        self.assertEqual(content["State"], "Success", content)
        self.assertEqual(content["Content"]["Processed"], expected + 1, content)
        self.assertEqual(content["Content"]["Queued"], 0, content)
        self.assertEqual(content["Content"]["AlreadyQueued"], expected + 1, content)
        self.assert_mirrored(source, target, expected + 1)

    def assert_backfill_byte_exact(self, storage_compression):
        target = self.start_target()
        source = self.add_orthanc(harness.source_orthanc(
            self.path("source"),
            harness.azure_section(harness.dicomweb_base(target), "", Enable=False),
            extra={"StorageCompression": storage_compression}))
        source.start()
        harness.upload_samples(source)
        harness.upload_all(source, harness.make_study(2, 3, LARGE_INSTANCE_BYTES))
        harness.upload_all(source, harness.make_study(1, 5))
        # Files of 16 MiB and more are mapped from Orthanc's storage directory when it stores
        # them uncompressed.
        harness.upload_all(source, harness.make_study(1, 1, MAPPED_INSTANCE_BYTES))
        source_instances = harness.list_instances(source)
        first = next(iter(source_instances))
        compressed = source.get(f"/instances/{first}/attachments/dicom/is-compressed").text
        self.assertEqual(compressed.strip(), "1" if storage_compression else "0")

        self.restart_enabled(source)
        job = source.post_json("/azure-dicom/sync", {"All": True}).json()
        self.assertEqual(source.wait_job(job["ID"], JOB_TIMEOUT_SECONDS)["State"], "Success")
        self.assert_mirrored(source, target, len(source_instances))

        # The target stores what it received, so its files must equal the source's, whether
        # the plugin read them as stored or through /file.
        self.assertGreater(max(int(source.get_json(f"/instances/{orthanc_id}")["FileSize"])
                               for orthanc_id in source_instances), MAPPED_MIN_BYTES)
        self.assert_same_files(source, target)

    def assert_same_files(self, source, target):
        """Check that the target has a copy of each of the source's files, byte for byte, and
        that the outbox recorded the MD5 of the file sent."""
        target_by_uid = {uid: orthanc_id
                         for orthanc_id, uid in harness.list_instances(target).items()}
        for orthanc_id, uid in harness.list_instances(source).items():
            sent = source.get(f"/instances/{orthanc_id}/file").content
            received = target.get(f"/instances/{target_by_uid[uid]}/file").content
            self.assertEqual(len(received), len(sent), uid)
            self.assertTrue(received == sent, f"the target's copy of {uid} differs")
            item = source.get_json(f"/azure-dicom/instances/{orthanc_id}")
            self.assertEqual(item["ContentMD5"], hashlib.md5(sent).hexdigest(), uid)

    def test_backfill_byte_exact(self):
        self.assert_backfill_byte_exact(storage_compression=False)

    def test_backfill_compressed_storage(self):
        self.assert_backfill_byte_exact(storage_compression=True)

    def test_sync_one_study(self):
        target = self.start_target()
        source = self.make_source(target, enable=False).start()
        selected = harness.make_study(2, 4)
        other = harness.make_study(1, 3)
        selected_ids = harness.upload_all(source, selected)
        harness.upload_all(source, other)
        study_id = source.get_json(f"/instances/{selected_ids[0]}/study")["ID"]

        self.restart_enabled(source)
        response = source.post_json("/azure-dicom/sync", {"Resources": [study_id]})
        self.assertEqual(response.status_code, 200, response.text)
        job_id = response.json()["ID"]
        self.assertEqual(source.wait_job(job_id, JOB_TIMEOUT_SECONDS)["State"], "Success")
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(selected))

        selected_uids = {harness.sop_uid_of(data) for data in selected}
        self.assertEqual(harness.list_sop_uids(target), selected_uids)
        self.assertEqual(status["Counts"]["Mirrored"], len(selected))
        self.assertEqual(sum(status["Counts"].values()), len(selected))

    def test_bad_bodies_rejected(self):
        target = self.start_target()
        source = self.make_source(target).start()
        harness.upload_all(source, harness.make_study(1, 2))
        counts_before = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=2)["Counts"]

        cases = [
            ("/azure-dicom/sync", "not json"),
            ("/azure-dicom/sync", "[]"),
            ("/azure-dicom/sync", "{}"),
            ("/azure-dicom/sync", '{"Resources": 5}'),
            ("/azure-dicom/sync", '{"Resources": [1, 2]}'),
            ("/azure-dicom/sync", '{"All": "yes"}'),
            ("/azure-dicom/sync", '{"Unknown": true}'),
            ("/azure-dicom/retry", "not json"),
            ("/azure-dicom/retry", "{}"),
            ("/azure-dicom/retry", '{"State": "Bogus"}'),
            ("/azure-dicom/retry", '{"State": 3}'),
            ("/azure-dicom/retry", '{"Resources": {"ID": "abc"}}'),
            ("/azure-dicom/check", '{"Unknown": true}'),
            ("/azure-dicom/check", "not json"),
            ("/azure-dicom/credentials/refresh", '{"Unknown": true}'),
        ]
        for route, body in cases:
            with self.subTest(route=route, body=body):
                response = source.post(route, data=body,
                                       headers={"Content-Type": "application/json"})
                self.assertEqual(response.status_code, 400, response.text)
                self.assertIsInstance(response.json().get("Message"), str)
                self.assertTrue(response.json()["Message"])
        self.assertEqual(source.counts(), counts_before)

    def test_bad_queries_rejected(self):
        target = self.start_target()
        source = self.make_source(target).start()
        cases = [
            ("/azure-dicom/instances?state=Bogus", 400),
            ("/azure-dicom/instances?limit=abc", 400),
            ("/azure-dicom/instances?limit=-1", 400),
            ("/azure-dicom/instances?since=abc", 400),
            ("/azure-dicom/instances?since=99999999999999999999999", 400),
            ("/azure-dicom/instances?since=-1", 400),
            ("/azure-dicom/instances/no-such-instance", 404),
            ("/azure-dicom/studies/no-such-study", 404),
        ]
        for path, expected_status in cases:
            with self.subTest(path=path):
                response = source.get(path)
                self.assertEqual(response.status_code, expected_status, response.text)
                self.assertTrue(response.json()["Message"])

        # An unknown ID is quoted in the message, cut short.
        long_id = "x" * 5000
        for path in (f"/azure-dicom/instances/{long_id}", f"/azure-dicom/studies/{long_id}",
                     f"/azure-dicom/resources/{long_id}", f"/azure-dicom/snapshots/{long_id}"):
            with self.subTest(path=path[:40]):
                response = source.get(path)
                self.assertEqual(response.status_code, 404, response.text[:200])
                message = response.json()["Message"]
                self.assertIn('"xxxx', message)
                self.assertLess(len(message), 300, message[:400])
        response = source.post_json("/azure-dicom/sync", {"Resources": ["y" * 100000]})
        self.assertEqual(response.status_code, 404, response.text[:200])
        self.assertLess(len(response.json()["Message"]), 300, response.text[:400])


if __name__ == "__main__":
    harness.main()
