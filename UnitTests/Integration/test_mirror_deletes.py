"""MirrorDeletes: deleting in Orthanc deletes the copies that the plugin created at the service.

With "MirrorDeletes": true, deleting an instance, a series, a study or a patient through
Orthanc's REST API must send one DICOMweb DELETE per instance that the plugin created. Each
goes to the partition the instance was sent to. An instance that the service already had
(AlreadyPresent) gets none. With the default false, nothing is deleted at the service.

With Orthanc's "OverwriteInstances": true, storing other content for a mirrored SOP Instance UID
keeps the Orthanc ID, and Orthanc reports the old instance as deleted. The plugin must then
delete the old copy and send the new file, so that the service ends with the new content
whatever the timing of the overwrite against the requests in flight.
"""

import os
import sys
import time

import pydicom.uid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

MIRROR_TIMEOUT_SECONDS = 120
DELETE_TIMEOUT_SECONDS = 60
# Long enough for the plugin to send a DELETE it would send, so that none by then means none.
SETTLE_SECONDS = 4
PARTITION = "p1"
OTHER_PARTITION = "p2"
SLOW_STOW_SECONDS = 3
DELETE_DELAY_SECONDS = 0.5


class MirrorDeletesTest(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.fake = fake_azure.FakeAzure(require_auth=False).start()
        self.addCleanup(self.fake.stop)

    def start_source(self, **settings):
        section = harness.azure_section(self.fake.url, "v2", Partition=PARTITION, **settings)
        self.source = self.add_orthanc(harness.source_orthanc(self.path("source"), section))
        return self.source.start()

    def upload(self, instances):
        """Upload instances and return {SOP Instance UID: Orthanc's response with its IDs}."""
        answers = {}
        for data in instances:
            answer = harness.upload(self.source, data)
            self.assertIsNotNone(answer, "Orthanc rejected a generated instance")
            answers[harness.sop_uid_of(data)] = answer
        return answers

    def wait_idle(self):
        total = len(harness.list_instances(self.source))
        return self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=total)

    def delete_in_orthanc(self, path, expected_uids):
        """DELETE a resource in Orthanc and return the DELETEs that the fake then received.

        Waits for one DELETE per expected instance, then SETTLE_SECONDS for any extra one.
        """
        marker = len(self.fake.delete_requests())
        response = self.source.delete(path)
        self.assertEqual(response.status_code, 200, f"DELETE {path}: {response.text[:300]}")
        harness.wait_for(
            lambda: len(self.fake.delete_requests()) - marker >= len(expected_uids),
            DELETE_TIMEOUT_SECONDS, f"{len(expected_uids)} DELETEs after DELETE {path}",
            describe_state=self.source.status)
        time.sleep(SETTLE_SECONDS)
        return self.fake.delete_requests()[marker:]

    def assert_deleted(self, deletes, expected, partition=PARTITION):
        """Check one successful DELETE per expected instance, at its URL in partition."""
        self.assertEqual(sorted(request["SOPInstanceUID"] for request in deletes),
                         sorted(expected), f"DELETEs received: {deletes}")
        for request in deletes:
            uid = request["SOPInstanceUID"]
            study, series = expected[uid]
            self.assertEqual(request["Partition"], partition, request)
            self.assertEqual(request["Path"], f"/v2/partitions/{partition}/studies/{study}"
                                              f"/series/{series}/instances/{uid}")
            self.assertEqual(request["Status"], 204, request)
            self.assertNotIn(uid, self.fake.stored_uids(partition),
                             f"{uid} is still stored at the service")

    def test_deletes_each_level(self):
        self.start_source(MirrorDeletes=True)
        study_uid = pydicom.uid.generate_uid()
        first_series = pydicom.uid.generate_uid()
        second_series = pydicom.uid.generate_uid()
        series_one = [harness.make_instance(study_uid, first_series, "PA", 2048, 1, number)
                      for number in range(1, 4)]
        series_two = [harness.make_instance(study_uid, second_series, "PA", 2048, 2, number)
                      for number in range(1, 4)]
        other_study = harness.make_study(1, 2, patient_id="PA")
        other_patient = harness.make_study(2, 2, patient_id="PB")
        preloaded = series_two[2]
        preloaded_uid = harness.sop_uid_of(preloaded)
        self.fake.preload(preloaded, partition=PARTITION)
        answers = self.upload(series_one + series_two + other_study + other_patient)
        self.wait_idle()

        items = {item["SOPInstanceUID"]: item for item in harness.list_outbox(self.source)}
        self.assertEqual(items[preloaded_uid]["State"], "AlreadyPresent")
        created = {uid for uid, item in items.items() if item["State"] == "Mirrored"}
        self.assertEqual(created, set(answers) - {preloaded_uid})

        def expected(instances):
            """Return {SOP Instance UID: (study, series)} of the instances the plugin created."""
            wanted = {}
            for data in instances:
                uid = harness.sop_uid_of(data)
                if uid != preloaded_uid:
                    wanted[uid] = (items[uid]["StudyInstanceUID"],
                                   items[uid]["SeriesInstanceUID"])
            return wanted

        first = harness.sop_uid_of(series_one[0])
        steps = [
            ("instance", f"/instances/{answers[first]['ID']}", [series_one[0]]),
            ("series", f"/series/{answers[preloaded_uid]['ParentSeries']}", series_two),
            ("study", f"/studies/{answers[harness.sop_uid_of(other_study[0])]['ParentStudy']}",
             other_study),
            ("patient",
             f"/patients/{answers[harness.sop_uid_of(other_patient[0])]['ParentPatient']}",
             other_patient),
        ]
        done = 0
        for level, path, instances in steps:
            with self.subTest(level=level):
                wanted = expected(instances)
                deletes = self.delete_in_orthanc(path, wanted)
                self.assert_deleted(deletes, wanted)
                done += len(wanted)
                for uid in wanted:
                    response = self.source.get(f"/azure-dicom/instances/{answers[uid]['ID']}")
                    self.assertEqual(response.status_code, 404,
                                     f"the outbox item of deleted {uid} was kept")

        self.assertNotIn(preloaded_uid, {request["SOPInstanceUID"]
                                         for request in self.fake.delete_requests()},
                         "a DELETE was sent for an instance that the plugin did not create")
        self.assertIn(preloaded_uid, self.fake.stored_uids(PARTITION))
        remaining = {harness.sop_uid_of(data) for data in series_one[1:]}
        self.assertTrue(remaining <= self.fake.stored_uids(PARTITION),
                        "instances that are still in Orthanc were deleted at the service")
        deletes = self.source.status()["Deletes"]
        self.assertEqual(deletes["Pending"], 0, deletes)
        self.assertEqual(deletes["Done"], done, deletes)
        self.assertEqual(deletes["LastError"], "", deletes)

    def test_deletes_follow_sent_to(self):
        self.start_source(MirrorDeletes=True)
        first = harness.make_study(1, 1)
        first_answers = self.upload(first)
        self.wait_idle()
        response = self.source.put_json("/azure-dicom/settings", {"Partition": OTHER_PARTITION})
        self.assertEqual(response.status_code, 200, response.text)
        second = harness.make_study(1, 1)
        second_answers = self.upload(second)
        self.wait_idle()
        items = {item["SOPInstanceUID"]: item for item in harness.list_outbox(self.source)}

        for answers, partition in ((first_answers, PARTITION),
                                   (second_answers, OTHER_PARTITION)):
            uid, answer = next(iter(answers.items()))
            with self.subTest(partition=partition):
                wanted = {uid: (items[uid]["StudyInstanceUID"],
                                items[uid]["SeriesInstanceUID"])}
                deletes = self.delete_in_orthanc(f"/instances/{answer['ID']}", wanted)
                self.assert_deleted(deletes, wanted, partition)

    def test_delete_retried_after_503(self):
        self.start_source(MirrorDeletes=True)
        study = harness.make_study(1, 2)
        answers = self.upload(study)
        self.wait_idle()
        uids = set(answers)
        self.fake.fail_next(503, count=2, target="delete")

        response = self.source.delete(f"/studies/{next(iter(answers.values()))['ParentStudy']}")
        self.assertEqual(response.status_code, 200, response.text)
        harness.wait_for(lambda: not (self.fake.stored_uids(PARTITION) & uids),
                         DELETE_TIMEOUT_SECONDS, "both instances deleted at the service",
                         describe_state=self.source.status)
        time.sleep(SETTLE_SECONDS)
        deletes = self.fake.delete_requests()
        for uid in uids:
            statuses = [request["Status"] for request in deletes
                        if request["SOPInstanceUID"] == uid]
            self.assertEqual(statuses.count(204), 1, f"DELETEs of {uid}: {statuses}")
            self.assertLessEqual(set(statuses), {204, 503}, f"DELETEs of {uid}: {statuses}")
        self.assertEqual(sum(1 for request in deletes if request["Status"] == 503), 2)
        status = self.source.status()["Deletes"]
        self.assertEqual(status["Pending"], 0, status)
        self.assertEqual(status["Done"], 2, status)

    def test_unsent_instance_not_deleted(self):
        self.start_source(MirrorDeletes=True)
        self.source.post("/azure-dicom/pause")
        answers = self.upload(harness.make_study(1, 2))
        harness.wait_for(lambda: self.source.counts()["Pending"] == 2, DELETE_TIMEOUT_SECONDS,
                         "2 pending instances", describe_state=self.source.status)
        response = self.source.delete(f"/studies/{next(iter(answers.values()))['ParentStudy']}")
        self.assertEqual(response.status_code, 200, response.text)
        self.source.post("/azure-dicom/resume")
        self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=2)
        time.sleep(SETTLE_SECONDS)

        self.assertEqual(self.fake.delete_requests(), [],
                         "a DELETE was sent for an instance that was never sent")
        self.assertEqual(self.fake.stow_requests(), [], "a deleted instance was sent")
        self.assertEqual(self.source.counts()["Skipped"], 2)

    def test_delete_while_sending(self):
        self.start_source(MirrorDeletes=True)
        self.fake.set_delay(SLOW_STOW_SECONDS)
        answers = self.upload(harness.make_study(1, 1))
        uid, answer = next(iter(answers.items()))
        harness.wait_for(lambda: self.source.counts()["Sending"] == 1, DELETE_TIMEOUT_SECONDS,
                         "the instance in flight", describe_state=self.source.status,
                         interval=0.05)
        response = self.source.delete(f"/instances/{answer['ID']}")
        self.assertEqual(response.status_code, 200, response.text)
        harness.wait_for(lambda: self.fake.stow_requests(), DELETE_TIMEOUT_SECONDS,
                         "the STOW-RS request to end", describe_state=self.source.status)
        time.sleep(SETTLE_SECONDS)

        stow = self.fake.stow_requests()
        self.assertEqual(stow[0]["Status"], 200, "the fake did not store the instance")
        items = {item["SOPInstanceUID"]: item for item in harness.list_outbox(self.source)}
        self.assertNotIn(uid, self.fake.stored_uids(PARTITION),
                         "an instance deleted in Orthanc while it was being sent stays at the "
                         f"service. Its outbox item: {items.get(uid)}")
        self.assertEqual(len(self.fake.delete_requests()), 1)

    def test_deletes_survive_kill(self):
        self.start_source(MirrorDeletes=True)
        answers = self.upload(harness.make_study(2, 6))
        self.wait_idle()
        uids = set(answers)
        self.fake.delay_next(DELETE_DELAY_SECONDS, count=10 * len(uids), target="delete")

        response = self.source.delete(f"/studies/{next(iter(answers.values()))['ParentStudy']}")
        self.assertEqual(response.status_code, 200, response.text)
        harness.wait_for(lambda: len(self.fake.delete_requests()) >= 2, DELETE_TIMEOUT_SECONDS,
                         "the first DELETEs", describe_state=self.source.status)
        self.source.kill()
        self.assertTrue(self.fake.stored_uids(PARTITION) & uids,
                        "every DELETE was done before the kill, so the kill tested nothing")

        self.source.start()
        harness.wait_for(lambda: not (self.fake.stored_uids(PARTITION) & uids),
                         DELETE_TIMEOUT_SECONDS + len(uids) * DELETE_DELAY_SECONDS,
                         "every instance deleted at the service after the restart",
                         describe_state=self.source.status)
        time.sleep(SETTLE_SECONDS)
        deletes = self.fake.delete_requests()
        for uid in uids:
            deleting = [request for request in deletes if uid in request["Deleted"]]
            self.assertEqual(len(deleting), 1, f"{uid} was deleted {len(deleting)} times")
        self.assertEqual(self.source.status()["Deletes"]["Pending"], 0)

    def test_deletes_off_by_default(self):
        self.start_source()
        study = harness.make_study(2, 2)
        answers = self.upload(study)
        self.wait_idle()
        self.assertEqual(self.fake.stored_uids(PARTITION), set(answers))

        response = self.source.delete(f"/studies/{next(iter(answers.values()))['ParentStudy']}")
        self.assertEqual(response.status_code, 200, response.text)
        time.sleep(SETTLE_SECONDS)
        self.assertEqual(self.fake.delete_requests(), [],
                         "MirrorDeletes is off, but the plugin sent a DELETE")
        self.assertEqual(self.fake.stored_uids(PARTITION), set(answers))



class OverwriteTest(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.fake = fake_azure.FakeAzure(require_auth=False).start()
        self.addCleanup(self.fake.stop)

    def start_source(self, **settings):
        section = harness.azure_section(self.fake.url, "v2", Partition=PARTITION,
                                        MirrorDeletes=True, **settings)
        self.source = self.add_orthanc(harness.source_orthanc(
            self.path("source"), section, extra={"OverwriteInstances": True}))
        return self.source.start()

    def store(self, data):
        """Upload a file to Orthanc and return its Orthanc ID and the MD5 of the stored file."""
        return harness.upload_with_stored_md5(self.source, data)

    def item(self, orthanc_id):
        response = self.source.get(f"/azure-dicom/instances/{orthanc_id}")
        return response.json() if response.status_code == 200 else None

    def mirror_first_version(self):
        """Store and mirror a new instance, and return (file, Orthanc ID, SOP Instance UID)."""
        original = harness.make_study(1, 1)[0]
        orthanc_id, md5 = self.store(original)
        uid = harness.sop_uid_of(original)
        harness.wait_for(lambda: self.fake.stored_md5(PARTITION, uid) == md5,
                         MIRROR_TIMEOUT_SECONDS, "the first version at the service",
                         describe_state=self.source.status)
        self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=1)
        return original, orthanc_id, uid

    def versions(self, original, count):
        return [harness.change_instance(original, SeriesDescription=f"version {number}")
                for number in range(2, 2 + count)]

    def wait_final(self, orthanc_id, uid, md5):
        """Wait until the service has the file with md5 and the item is Mirrored, then settle.

        Returns the item, read again after SETTLE_SECONDS, so that a late DELETE or POST that
        undoes the outcome fails the checks that follow.
        """
        def done():
            item = self.item(orthanc_id)
            return (self.fake.stored_md5(PARTITION, uid) == md5 and item is not None
                    and item["State"] == "Mirrored"
                    and self.source.status()["Deletes"]["Pending"] == 0)

        harness.wait_for(done, MIRROR_TIMEOUT_SECONDS, f"{uid} mirrored with MD5 {md5}",
                         describe_state=lambda: {"Item": self.item(orthanc_id),
                                                 "Status": self.source.status(),
                                                 "Fake": self.fake.state()})
        time.sleep(SETTLE_SECONDS)
        return self.item(orthanc_id)

    def assert_new_content(self, orthanc_id, uid, md5):
        item = self.wait_final(orthanc_id, uid, md5)
        self.assertIsNotNone(item, "the outbox item of the stored instance was removed")
        self.assertEqual(item["State"], "Mirrored", item)
        self.assertEqual(item["ContentMD5"], md5, item)
        self.assertIs(item["ContentConflict"], False, item)
        self.assertEqual(self.fake.stored_md5(PARTITION, uid), md5,
                         "the service does not store the last file that Orthanc stored")
        self.assertEqual(self.source.status()["Deletes"]["Pending"], 0)
        self.assertEqual(self.source.counts()["Pending"], 0)

    def assert_delete_before_last_post(self, uid, marker):
        """Check that the requests after marker deleted the old copy before the last POST."""
        requests = [request for request in self.fake.state()["Requests"][marker:]
                    if request["Kind"] in ("stow", "delete")]
        kinds = [request["Kind"] for request in requests]
        self.assertIn("delete", kinds, f"no DELETE of the old copy: {requests}")
        posts = [index for index, request in enumerate(requests)
                 if uid in request.get("Instances", {})]
        self.assertTrue(posts, f"the new file was never sent: {requests}")
        self.assertLess(kinds.index("delete"), posts[-1],
                        f"the last POST came before the DELETE: {requests}")
        self.assertEqual(requests[posts[-1]]["Status"], 200, requests)

    def test_overwrite_after_mirrored(self):
        self.start_source()
        original, orthanc_id, uid = self.mirror_first_version()
        changed = self.versions(original, 1)[0]
        marker = len(self.fake.state()["Requests"])

        same_id, md5 = self.store(changed)
        self.assertEqual(same_id, orthanc_id, "Orthanc gave the stored file a new ID")
        self.assert_new_content(orthanc_id, uid, md5)
        self.assert_delete_before_last_post(uid, marker)

    def test_overwrite_while_stow_in_flight(self):
        self.start_source()
        original = harness.make_study(1, 1)[0]
        uid = harness.sop_uid_of(original)
        self.fake.set_delay(SLOW_STOW_SECONDS)
        orthanc_id, _ = self.store(original)
        harness.wait_for(lambda: self.source.counts()["Sending"] == 1, DELETE_TIMEOUT_SECONDS,
                         "the first version in flight", describe_state=self.source.status,
                         interval=0.05)

        _, md5 = self.store(self.versions(original, 1)[0])
        self.fake.set_delay(0)
        self.assert_new_content(orthanc_id, uid, md5)

    def test_overwrite_while_delete_in_flight(self):
        self.start_source()
        original, orthanc_id, uid = self.mirror_first_version()
        first, second = self.versions(original, 2)
        marker = len(self.fake.state()["Requests"])

        self.fake.delay_next(SLOW_STOW_SECONDS, target="delete")
        self.store(first)
        harness.wait_for(lambda: self.fake.delete_requests(), DELETE_TIMEOUT_SECONDS,
                         "the DELETE of the first version", describe_state=self.source.status,
                         interval=0.05)
        _, md5 = self.store(second)
        self.assert_new_content(orthanc_id, uid, md5)
        self.assert_delete_before_last_post(uid, marker)

    def test_overwrite_with_delete_held(self):
        self.start_source()
        original, orthanc_id, uid = self.mirror_first_version()
        marker = len(self.fake.state()["Requests"])

        # The DELETE of the old copy stays in flight while the follower queues the new file.
        self.fake.delay_next(SLOW_STOW_SECONDS, target="delete")
        _, md5 = self.store(self.versions(original, 1)[0])
        self.assert_new_content(orthanc_id, uid, md5)
        self.assert_delete_before_last_post(uid, marker)

    def test_restart_without_mirror_deletes(self):
        # The DELETE of the old copy still fails when Orthanc restarts with MirrorDeletes false:
        # the plugin gives the deletion up and sends the new file as a changed instance, which
        # OnConflict "Replace" sends with PUT.
        self.start_source(OnConflict="Replace")
        original, orthanc_id, uid = self.mirror_first_version()
        self.fake.fail_next(503, count=1000, target="delete")
        _, md5 = self.store(self.versions(original, 1)[0])
        harness.wait_for(lambda: self.fake.delete_requests(), DELETE_TIMEOUT_SECONDS,
                         "the DELETE of the old copy", describe_state=self.source.status)
        self.source.stop()
        self.fake.clear_faults()
        self.source.azure["MirrorDeletes"] = False
        self.source.start()

        harness.wait_for(lambda: self.fake.stored_md5(PARTITION, uid) == md5,
                         MIRROR_TIMEOUT_SECONDS, "the new file at the service",
                         describe_state=lambda: {"Item": self.item(orthanc_id),
                                                 "Status": self.source.status()})
        self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=1)
        item = self.item(orthanc_id)
        self.assertEqual(item["State"], "Mirrored", item)
        self.assertIs(item["DeleteRequested"], False, item)
        self.assertEqual(self.source.status()["Deletes"]["Pending"], 0)
        self.assertIn("because MirrorDeletes is false", self.source.read_log())

    def test_several_overwrites(self):
        self.start_source()
        original, orthanc_id, uid = self.mirror_first_version()
        marker = len(self.fake.state()["Requests"])

        md5 = None
        for changed in self.versions(original, 5):
            _, md5 = self.store(changed)
        self.assert_new_content(orthanc_id, uid, md5)
        self.assert_delete_before_last_post(uid, marker)

    def test_overwrites_while_paused(self):
        self.start_source()
        original, orthanc_id, uid = self.mirror_first_version()
        marker = len(self.fake.state()["Requests"])
        self.source.post("/azure-dicom/pause")

        md5 = None
        for changed in self.versions(original, 2):
            _, md5 = self.store(changed)
        time.sleep(SETTLE_SECONDS)
        self.source.post("/azure-dicom/resume")
        self.assert_new_content(orthanc_id, uid, md5)
        self.assert_delete_before_last_post(uid, marker)

if __name__ == "__main__":
    harness.main()
