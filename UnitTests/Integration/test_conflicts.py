"""An instance stored again with other content: OnConflict Keep and Replace.

Orthanc runs with "OverwriteInstances": true, so a second file with the same SOP Instance UID
replaces the first one in Orthanc. The plugin compares the new file's MD5 with the one it
sent: Keep sends it again with POST and reports the conflict (45070), Replace with API v2 uses
the service's upsert (PUT), and Replace with API v1 or a plain DICOMweb server deletes the old
copy and posts the new one. Same content stored again sends nothing. Every test checks the
requests that reached the fake one by one.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

MIRROR_TIMEOUT_SECONDS = 120
# Long enough for the change follower and a worker to send a re-stored instance, so that
# nothing sent by then means that nothing is sent.
SETTLE_SECONDS = 5
DICOM_KINDS = ("stow", "put", "delete")


class ConflictTest(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.fake = fake_azure.FakeAzure(require_auth=False).start()
        self.addCleanup(self.fake.stop)

    def start_source(self, api_version, on_conflict):
        # A plain DICOMweb server has no version in its URL: the fake's /v1 serves as one.
        service_url = self.fake.url if api_version else self.fake.url + "/v1"
        section = harness.azure_section(service_url, api_version, OnConflict=on_conflict)
        self.source = self.add_orthanc(harness.source_orthanc(
            self.path("source"), section, extra={"OverwriteInstances": True}))
        return self.source.start()

    def dicom_requests(self):
        return [request for request in self.fake.state()["Requests"]
                if request["Kind"] in DICOM_KINDS]

    def store(self, data):
        """Upload a file to Orthanc and return its Orthanc ID and the MD5 of the stored file."""
        return harness.upload_with_stored_md5(self.source, data)

    def item(self, orthanc_id):
        return self.source.get_json(f"/azure-dicom/instances/{orthanc_id}")

    def wait_stored_again(self, orthanc_id, uid, marker):
        """Wait until a POST or PUT after request number marker carried uid and the item is idle.

        Every OnConflict path ends with such a request, and an item that is no longer Pending
        or Sending has its outcome.
        """
        def sent():
            carried = any(uid in request.get("Instances", {})
                          for request in self.dicom_requests()[marker:])
            item = self.item(orthanc_id)
            return item if carried and item["State"] not in harness.ACTIVE_STATES else None

        return harness.wait_for(sent, MIRROR_TIMEOUT_SECONDS,
                                f"{uid} sent again after its content changed",
                                describe_state=lambda: self.item(orthanc_id))

    def assert_nothing_sent_for(self, data, orthanc_id):
        """Store the same file again and check that the plugin sends nothing."""
        before = self.item(orthanc_id)
        marker = len(self.dicom_requests())
        same_id, _ = self.store(data)
        self.assertEqual(same_id, orthanc_id)
        time.sleep(SETTLE_SECONDS)
        self.assertEqual(self.dicom_requests()[marker:], [],
                         "the same content stored again was sent")
        after = self.item(orthanc_id)
        self.assertEqual(after["State"], before["State"], after)
        self.assertEqual(after["ContentMD5"], before["ContentMD5"], after)

    def mirror_then_change(self, api_version, on_conflict):
        """Mirror an instance, store other content for it, and return what the fake saw.

        Returns (Orthanc ID, SOP Instance UID, old MD5, new MD5, changed file, the DICOM
        requests received after the change).
        """
        self.start_source(api_version, on_conflict)
        original = harness.make_study(1, 1)[0]
        uid = harness.sop_uid_of(original)
        orthanc_id, old_md5 = self.store(original)
        self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=1)
        item = self.item(orthanc_id)
        self.assertEqual(item["State"], "Mirrored", item)
        self.assertEqual(item["ContentMD5"], old_md5, "ContentMD5 is not the MD5 of the file")
        self.assertEqual(self.fake.stored_md5(fake_azure.DEFAULT_PARTITION, uid), old_md5)
        self.assert_nothing_sent_for(original, orthanc_id)

        changed = harness.change_instance(original, SeriesDescription="corrected")
        marker = len(self.dicom_requests())
        changed_id, new_md5 = self.store(changed)
        self.assertEqual(changed_id, orthanc_id, "Orthanc gave the re-stored instance a new ID")
        self.assertNotEqual(new_md5, old_md5)
        self.wait_stored_again(orthanc_id, uid, marker)
        time.sleep(SETTLE_SECONDS)
        item = self.item(orthanc_id)
        self.assertEqual(item["ContentMD5"], new_md5,
                         "ContentMD5 must be the MD5 of the file last sent")
        return orthanc_id, uid, old_md5, new_md5, changed, self.dicom_requests()[marker:]

    def test_keep_reports_conflict(self):
        orthanc_id, uid, old_md5, _, changed, sent = self.mirror_then_change("v2", "Keep")

        self.assertEqual(len(sent), 1, f"expected one POST, got {sent}")
        self.assertEqual(sent[0]["Method"], "POST")
        self.assertEqual(sent[0]["Path"], "/v2/studies")
        self.assertEqual(sent[0]["Status"], 409)
        self.assertEqual(sent[0]["Instances"], {uid: fake_azure.REASON_ALREADY_EXISTS})
        item = self.item(orthanc_id)
        self.assertEqual(item["State"], "AlreadyPresent", item)
        self.assertIs(item["ContentConflict"], True, item)
        self.assertIn("content", item["Message"].lower(),
                      f"the message does not say that the content differs: {item['Message']}")
        self.assertEqual(self.source.status()["Conflicts"], 1)
        self.assertEqual(self.fake.stored_md5(fake_azure.DEFAULT_PARTITION, uid), old_md5,
                         "Keep must leave the old copy at the service")
        self.assertEqual(self.fake.creation_counts(), {uid: 1})
        self.assert_nothing_sent_for(changed, orthanc_id)

    def test_replace_v2_upserts(self):
        orthanc_id, uid, _, new_md5, changed, sent = self.mirror_then_change("v2", "Replace")

        self.assertEqual(len(sent), 1, f"expected one PUT, got {sent}")
        self.assertEqual(sent[0]["Method"], "PUT")
        self.assertEqual(sent[0]["Path"], "/v2/studies")
        self.assertEqual(sent[0]["Status"], 200)
        self.assertEqual(sent[0]["Instances"], {uid: "Replaced"})
        item = self.item(orthanc_id)
        self.assertEqual(item["State"], "Mirrored", item)
        self.assertIs(item["ContentConflict"], False, item)
        self.assertEqual(self.source.status()["Conflicts"], 0)
        self.assertEqual(self.fake.stored_md5(fake_azure.DEFAULT_PARTITION, uid), new_md5,
                         "the service must hold the new content")
        self.assertEqual(self.fake.replacement_counts(), {uid: 1})
        self.assert_nothing_sent_for(changed, orthanc_id)

    def test_replace_without_upsert(self):
        # A v2 service that rejects PUT with 405: the old copy is deleted and the new one posted.
        self.fake.fail_next(405, count=1, target="put", body="Method Not Allowed")
        orthanc_id, uid, _, new_md5, _, sent = self.mirror_then_change("v2", "Replace")

        self.assertEqual([(request["Method"], request["Status"]) for request in sent],
                         [("PUT", 405), ("DELETE", 204), ("POST", 200)], sent)
        self.assertEqual(self.item(orthanc_id)["State"], "Mirrored")
        self.assertEqual(self.fake.stored_md5(fake_azure.DEFAULT_PARTITION, uid), new_md5)

    def test_batch_content_md5(self):
        self.start_source("v2", "Keep")
        self.source.post("/azure-dicom/pause")
        study = harness.make_study(2, 4)
        expected = {}
        for data in study:
            orthanc_id, md5 = self.store(data)
            expected[orthanc_id] = md5
        self.source.post("/azure-dicom/resume")
        self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(study))

        self.assertTrue(any(len(request.get("Instances", {})) > 1
                            for request in self.fake.stow_requests()),
                        "no request carried several instances")
        for orthanc_id, md5 in expected.items():
            item = self.item(orthanc_id)
            self.assertEqual(item["ContentMD5"], md5, item)
            self.assertEqual(self.fake.stored_md5(fake_azure.DEFAULT_PARTITION,
                                                  item["SOPInstanceUID"]), md5)

    def check_delete_then_post(self, api_version, prefix):
        orthanc_id, uid, _, new_md5, changed, sent = self.mirror_then_change(api_version,
                                                                             "Replace")
        item = self.item(orthanc_id)

        self.assertEqual([request["Method"] for request in sent], ["DELETE", "POST"],
                         f"expected DELETE then POST, got {sent}")
        self.assertEqual(sent[0]["Path"],
                         f"{prefix}/studies/{item['StudyInstanceUID']}/series/"
                         f"{item['SeriesInstanceUID']}/instances/{uid}")
        self.assertEqual(sent[0]["Status"], 204)
        self.assertEqual(sent[0]["Deleted"], [uid])
        self.assertEqual(sent[1]["Path"], f"{prefix}/studies")
        self.assertEqual(sent[1]["Status"], 200)
        self.assertEqual(sent[1]["Instances"], {uid: "Stored"})
        self.assertEqual(item["State"], "Mirrored", item)
        self.assertIs(item["ContentConflict"], False, item)
        self.assertEqual(self.fake.stored_md5(fake_azure.DEFAULT_PARTITION, uid), new_md5,
                         "the service must hold the new content")
        self.assert_nothing_sent_for(changed, orthanc_id)

    def test_replace_v1_deletes_first(self):
        self.check_delete_then_post("v1", "/v1")

    def test_replace_plain_dicomweb(self):
        self.check_delete_then_post("", "/v1")


if __name__ == "__main__":
    harness.main()
