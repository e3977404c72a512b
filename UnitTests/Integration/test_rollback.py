"""Snapshots and rollback: undo a move to the wrong partition, also across a kill -9.

The source Orthanc mirrors study A to partition "a" of the fake Azure DICOM service, takes a
snapshot, moves to partition "b" at run time and mirrors study B there. Rolling back to the
snapshot must delete from the service exactly what the plugin created after the snapshot (B,
never an instance that was already there), restore the settings, and leave A alone.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

MIRROR_TIMEOUT_SECONDS = 120
STATE_TIMEOUT_SECONDS = 30
ROLLBACK_TIMEOUT_SECONDS = 180
# Long enough for a worker or the rollback job to send what it would send.
SETTLE_SECONDS = 4
FILE_PARTITION = "a"
NEW_PARTITION = "b"
# The slow DELETEs of the kill test: 48 instances at 0.25 s each take 12 s with one request
# at a time, which leaves time to kill Orthanc in the middle.
KILL_SERIES = 4
KILL_INSTANCES_PER_SERIES = 12
DELETE_DELAY_SECONDS = 0.25
DELETES_BEFORE_KILL = 5
# A STOW-RS request that is still in flight when the rollback starts.
SLOW_STOW_SECONDS = 3
IN_FLIGHT_INSTANCES = 6
# The DELETEs of these take 10 x 0.25 s, so the first rollback still runs at the second request.
CONFLICT_INSTANCES = 10
MAX_FIRST_ITEMS = 20
# A destination that is never contacted: the tests only store it in a snapshot.
REMOTE_SERVICE_URL = "https://dicom.example.invalid"


def uids_of(instances):
    return {harness.sop_uid_of(data) for data in instances}


class RollbackTest(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.fake = fake_azure.FakeAzure(require_auth=False).start()
        self.addCleanup(self.fake.stop)

    def start_source(self, extra=None):
        section = harness.azure_section(self.fake.url, "v2", Partition=FILE_PARTITION)
        self.source = self.add_orthanc(harness.source_orthanc(self.path("source"), section,
                                                              extra=extra))
        return self.source.start()

    def settings(self):
        return self.source.get_json("/azure-dicom/settings")

    def snapshots(self):
        return self.source.get_json("/azure-dicom/snapshots")["Snapshots"]

    def items_by_uid(self):
        return {item["SOPInstanceUID"]: item for item in harness.list_outbox(self.source)}

    def upload_and_wait(self, instances):
        """Upload instances and wait until the outbox is idle again."""
        total = len(harness.list_outbox(self.source)) + len(instances)
        harness.upload_all(self.source, instances)
        return self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=total)

    def take_snapshot(self, label):
        response = self.source.post_json("/azure-dicom/snapshots", {"Label": label})
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()

    def move_to_partition(self, partition):
        response = self.source.put_json("/azure-dicom/settings", {"Partition": partition})
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()

    def rollback(self, snapshot_id, body, expected_status=200):
        response = self.source.post_json(f"/azure-dicom/snapshots/{snapshot_id}/rollback", body)
        self.assertEqual(response.status_code, expected_status,
                         f"rollback to {snapshot_id} with {body} returned "
                         f"{response.status_code}: {response.text[:500]}")
        return response.json() if expected_status == 200 else response

    def rollback_status(self):
        return self.source.status()["Rollback"]

    def wait_rollback_end(self, timeout=ROLLBACK_TIMEOUT_SECONDS):
        def ended():
            rollback = self.rollback_status()
            return rollback if rollback and rollback["State"] != "Running" else None

        return harness.wait_for(ended, timeout, "the rollback to end",
                                describe_state=self.source.status)

    def assert_deletes_exactly(self, deletes, expected_uids, partition, items):
        """Check one DELETE per expected instance, each at its own URL in partition."""
        seen = [request["SOPInstanceUID"] for request in deletes]
        self.assertEqual(sorted(seen), sorted(expected_uids),
                         f"expected one DELETE per instance, got {len(seen)} for "
                         f"{len(set(seen))} instances")
        for request in deletes:
            uid = request["SOPInstanceUID"]
            item = items[uid]
            self.assertEqual(request["Partition"], partition, request)
            self.assertEqual(request["Path"],
                             f"/v2/partitions/{partition}/studies/{item['StudyInstanceUID']}"
                             f"/series/{item['SeriesInstanceUID']}/instances/{uid}")
            self.assertEqual(request["Status"], 204, request)

    def test_rollback_to_partition_a(self):
        self.start_source()
        study_a = harness.make_study(1, 3)
        self.upload_and_wait(study_a)
        samples = harness.upload_samples(self.source)
        self.assertTrue(samples, "no pydicom sample was stored")
        self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS,
                                     expected_total=len(study_a) + len(samples))
        uids_a = uids_of(study_a) | set(samples)
        states_a = {uid: item["State"] for uid, item in self.items_by_uid().items()}
        self.assertEqual(set(states_a), uids_a)
        stored_a = self.fake.stored_instances(FILE_PARTITION)
        self.assertTrue(uids_of(study_a) <= set(stored_a), "study A was not mirrored to a")

        snapshot = self.take_snapshot("before the move to b")
        self.move_to_partition(NEW_PARTITION)
        preloaded = harness.make_study(1, 1)[0]
        preloaded_uid = harness.sop_uid_of(preloaded)
        self.fake.preload(preloaded, partition=NEW_PARTITION)
        study_b = harness.make_study(2, 3)
        uids_b = uids_of(study_b)
        self.upload_and_wait(study_b + [preloaded])
        items = self.items_by_uid()
        for uid in uids_b:
            self.assertEqual(items[uid]["State"], "Mirrored", items[uid])
        self.assertEqual(items[preloaded_uid]["State"], "AlreadyPresent", items[preloaded_uid])
        self.assertIs(items[preloaded_uid]["CreatedAtService"], False)
        self.assertEqual(self.fake.stored_uids(NEW_PARTITION), uids_b | {preloaded_uid})
        bytes_b = sum(items[uid]["Size"] for uid in uids_b)

        # Instances queued after the snapshot but not sent yet are dropped by the rollback.
        self.source.post("/azure-dicom/pause")
        study_c = harness.make_study(1, 2)
        uids_c = uids_of(study_c)
        harness.upload_all(self.source, study_c)
        harness.wait_for(lambda: self.source.counts()["Pending"] == len(study_c),
                         STATE_TIMEOUT_SECONDS, "study C to be queued",
                         describe_state=self.source.status)

        requests_before = len(self.fake.state()["Requests"])
        stored_b = self.fake.stored_instances(NEW_PARTITION)
        settings_before = self.settings()
        snapshot_count = len(self.snapshots())

        plan = self.rollback(snapshot["ID"], {})
        self.assertEqual(self.rollback(snapshot["ID"], {"DryRun": True}), plan,
                         "{} and {\"DryRun\": true} must return the same plan")
        self.assertIs(plan["DryRun"], True)
        self.assertEqual(plan["Snapshot"], snapshot["ID"])
        self.assertEqual(plan["Confirm"], snapshot["ID"])
        self.assertIn({"Key": "Partition", "Current": NEW_PARTITION,
                       "Restored": FILE_PARTITION}, plan["SettingsDiff"])
        self.assertNotIn("Workers", [diff["Key"] for diff in plan["SettingsDiff"]],
                         "SettingsDiff lists a key that did not change")
        self.assertEqual(plan["Delete"]["Instances"], len(uids_b))
        self.assertEqual(plan["Delete"]["Bytes"], bytes_b)
        self.assertEqual(plan["Delete"]["Destinations"], [
            {"ServiceUrl": self.fake.url, "ApiVersion": "v2", "Partition": NEW_PARTITION,
             "Instances": len(uids_b), "Bytes": bytes_b}])
        planned = {item["SOPInstanceUID"] for item in plan["Delete"]["FirstItems"]}
        self.assertEqual(planned, uids_b, "the plan must list exactly study B")
        self.assertNotIn(preloaded_uid, planned, "the plan deletes an AlreadyPresent instance")
        self.assertEqual(plan["DroppedPending"]["Instances"], len(uids_c))
        self.assertEqual({item["SOPInstanceUID"]
                          for item in plan["DroppedPending"]["FirstItems"]}, uids_c)
        self.assertEqual(plan["AlreadyPresentKept"], 1)

        self.assertEqual(self.fake.delete_requests(), [], "a dry run sent a DELETE")
        self.assertEqual(len(self.fake.state()["Requests"]), requests_before,
                         "a dry run sent a request to the service")
        self.assertEqual(self.fake.stored_instances(NEW_PARTITION), stored_b)
        self.assertEqual(self.settings(), settings_before, "a dry run changed the settings")
        self.assertEqual(len(self.snapshots()), snapshot_count, "a dry run took a snapshot")

        rejected = [
            ({"DryRun": False}, "Confirm"),
            ({"DryRun": False, "Confirm": "999999"}, "Confirm"),
            ({"DryRun": False, "Confirm": int(snapshot["ID"])}, "Confirm"),
            ({"DryRun": "yes"}, "DryRun"),
            ({"DryRun": False, "Confirm": snapshot["ID"], "DeleteFromService": "no"},
             "DeleteFromService"),
            ({"Unknown": True}, "Unknown"),
        ]
        for body, field in rejected:
            with self.subTest(body=body):
                response = self.rollback(snapshot["ID"], body, expected_status=400)
                self.assertIn(field, response.text)
        response = self.source.post(f"/azure-dicom/snapshots/{snapshot['ID']}/rollback",
                                    data="not JSON")
        self.assertEqual(response.status_code, 400, response.text)
        self.rollback("999999", {}, expected_status=404)
        response = self.source.get(f"/azure-dicom/snapshots/{snapshot['ID']}/rollback")
        self.assertEqual(response.status_code, 405, response.text)
        self.assertEqual(self.fake.delete_requests(), [], "a rejected rollback sent a DELETE")
        self.assertEqual(self.settings(), settings_before,
                         "a rejected rollback changed the settings")
        self.assertEqual(len(self.snapshots()), snapshot_count,
                         "a rejected rollback took a snapshot")
        self.assertIsNone(self.rollback_status(), "a rejected rollback started")

        started = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]})
        self.assertEqual(started["Path"], f"/jobs/{started['ID']}")
        safety = started["SafetySnapshot"]
        self.assertEqual(safety["Reason"], "Rollback")
        self.assertEqual(safety["Settings"]["Partition"], NEW_PARTITION)
        self.assertIs(safety["Paused"], True)
        self.assertIs(started["Plan"]["DryRun"], False)
        self.assertEqual(started["Plan"]["Delete"]["Instances"], len(uids_b))

        job = self.source.wait_job(started["ID"], ROLLBACK_TIMEOUT_SECONDS)
        self.assertEqual(job["State"], "Success", job)
        self.assertEqual(job["Type"], "AzureDicomRollback")
        content = job["Content"]
        self.assertEqual(content["Rollback"], started["Rollback"])
        self.assertEqual(content["Snapshot"], snapshot["ID"])
        for key, expected in (("Total", len(uids_b)), ("Deleted", len(uids_b)),
                              ("NotFound", 0), ("Failed", 0), ("Remaining", 0)):
            self.assertEqual(content[key], expected, f"job content {key}: {content}")
        rollback = self.wait_rollback_end()
        self.assertEqual(rollback["ID"], started["Rollback"])
        self.assertEqual(rollback["Snapshot"], snapshot["ID"])
        self.assertEqual(rollback["Job"], started["ID"])
        self.assertEqual(rollback["State"], "Success", rollback)
        for key, expected in (("Total", len(uids_b)), ("Deleted", len(uids_b)),
                              ("NotFound", 0), ("Failed", 0), ("Remaining", 0)):
            self.assertEqual(rollback[key], expected, f"status Rollback {key}: {rollback}")

        items = self.items_by_uid()
        self.assert_deletes_exactly(self.fake.delete_requests(), uids_b, NEW_PARTITION, items)
        self.assertEqual(self.fake.stored_uids(NEW_PARTITION), {preloaded_uid},
                         "partition b must keep only the instance that was there before")
        self.assertEqual(self.fake.stored_instances(FILE_PARTITION), stored_a,
                         "the rollback changed partition a")
        for uid in uids_b:
            self.assertEqual(items[uid]["State"], "RolledBack", items[uid])
            self.assertIs(items[uid]["CreatedAtService"], False, items[uid])
        self.assertEqual(items[preloaded_uid]["State"], "AlreadyPresent")
        for uid in uids_a:
            self.assertEqual(items[uid]["State"], states_a[uid], items[uid])
        for uid in uids_c:
            self.assertEqual(items[uid]["State"], "Skipped", items[uid])
        sent = {uid for request in self.fake.stow_requests()
                for uid in request.get("Instances", {})}
        self.assertEqual(sent & uids_c, set(), "a dropped pending instance was sent")

        restored = self.settings()
        self.assertEqual(restored["Settings"]["Partition"], FILE_PARTITION)
        self.assertIs(restored["Paused"], False)
        self.assertEqual(restored["Overridden"], {})
        study_d = harness.make_study(1, 1)
        self.upload_and_wait(study_d)
        self.assertTrue(uids_of(study_d) <= self.fake.stored_uids(FILE_PARTITION),
                        "an instance queued after the rollback did not go to partition a")

        # The safety snapshot undoes the rollback's settings, and deletes what was created
        # since (study D in partition a).
        plan = self.rollback(safety["ID"], {"DryRun": True})
        self.assertIn({"Key": "Partition", "Current": FILE_PARTITION,
                       "Restored": NEW_PARTITION}, plan["SettingsDiff"])
        self.assertEqual(plan["Delete"]["Instances"], 1)
        self.assertEqual(plan["Delete"]["Destinations"][0]["Partition"], FILE_PARTITION)
        deletes_before = len(self.fake.delete_requests())
        started = self.rollback(safety["ID"], {"DryRun": False, "Confirm": safety["ID"]})
        job = self.source.wait_job(started["ID"], ROLLBACK_TIMEOUT_SECONDS)
        self.assertEqual(job["State"], "Success", job)
        self.assertEqual(self.wait_rollback_end()["State"], "Success")
        restored = self.settings()
        self.assertEqual(restored["Settings"]["Partition"], NEW_PARTITION,
                         "rolling back to the safety snapshot must restore partition b")
        self.assertIs(restored["Paused"], True)
        self.assert_deletes_exactly(self.fake.delete_requests()[deletes_before:],
                                    uids_of(study_d), FILE_PARTITION, self.items_by_uid())

    def test_settings_only_rollback(self):
        self.start_source()
        self.upload_and_wait(harness.make_study(1, 2))
        snapshot = self.take_snapshot("settings only")
        self.move_to_partition(NEW_PARTITION)
        study_b = harness.make_study(1, 2)
        self.upload_and_wait(study_b)

        plan = self.rollback(snapshot["ID"], {"DeleteFromService": False})
        self.assertEqual(plan["Delete"]["Instances"], 0)
        self.assertEqual(plan["DroppedPending"]["Instances"], 0)
        started = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"],
                                                 "DeleteFromService": False})
        self.assertEqual(started["Plan"]["Delete"]["Instances"], 0)
        harness.wait_for(lambda: self.settings()["Settings"]["Partition"] == FILE_PARTITION,
                         STATE_TIMEOUT_SECONDS, "Partition a restored",
                         describe_state=self.settings)
        rollback = self.rollback_status()
        if rollback is not None:
            self.wait_rollback_end()
        time.sleep(SETTLE_SECONDS)
        self.assertEqual(self.fake.delete_requests(), [],
                         "DeleteFromService false sent a DELETE")
        self.assertEqual(self.fake.stored_uids(NEW_PARTITION), uids_of(study_b))
        items = self.items_by_uid()
        for uid in uids_of(study_b):
            self.assertEqual(items[uid]["State"], "Mirrored", items[uid])

    def test_rollback_to_other_service(self):
        other = fake_azure.FakeAzure(require_auth=False).start()
        self.addCleanup(other.stop)
        self.start_source()
        study_a = harness.make_study(1, 2)
        self.upload_and_wait(study_a)
        snapshot = self.take_snapshot("before the move to another service")
        response = self.source.put_json("/azure-dicom/settings",
                                        {"ServiceUrl": other.url, "ApiVersion": "v1"})
        self.assertEqual(response.status_code, 200, response.text)
        study_b = harness.make_study(1, 4)
        uids_b = uids_of(study_b)
        self.upload_and_wait(study_b)
        self.assertEqual(other.stored_uids(FILE_PARTITION), uids_b)

        # One instance is already gone from the service, and the service fails twice first.
        gone = sorted(uids_b)[0]
        other.discard(FILE_PARTITION, gone)
        other.fail_next(503, count=2, target="delete")

        started = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]})
        self.assertEqual(started["Plan"]["Delete"]["Destinations"], [
            {"ServiceUrl": other.url, "ApiVersion": "v1", "Partition": FILE_PARTITION,
             "Instances": len(uids_b),
             "Bytes": sum(self.items_by_uid()[uid]["Size"] for uid in uids_b)}])
        rollback = self.wait_rollback_end()
        self.assertEqual(rollback["State"], "Success", rollback)
        self.assertEqual(rollback["Deleted"], len(uids_b) - 1, rollback)
        self.assertEqual(rollback["NotFound"], 1, rollback)
        self.assertEqual(rollback["Failed"], 0, rollback)

        self.assertEqual(self.fake.delete_requests(), [],
                         "the rollback sent a DELETE to the service of the snapshot")
        self.assertEqual(other.stored_uids(FILE_PARTITION), set())
        self.assertTrue(uids_of(study_a) <= self.fake.stored_uids(FILE_PARTITION))
        deletes = other.delete_requests()
        self.assertEqual(sorted(request["Status"] for request in deletes),
                         sorted([204] * (len(uids_b) - 1) + [404, 503, 503]))
        items = self.items_by_uid()
        for request in deletes:
            item = items[request["SOPInstanceUID"]]
            self.assertEqual(request["Path"],
                             f"/v1/partitions/{FILE_PARTITION}/studies/{item['StudyInstanceUID']}"
                             f"/series/{item['SeriesInstanceUID']}/instances/"
                             f"{item['SOPInstanceUID']}")
        for uid in uids_b:
            self.assertEqual(items[uid]["State"], "RolledBack", items[uid])
        restored = self.settings()["Settings"]
        self.assertEqual(restored["ServiceUrl"], self.fake.url)
        self.assertEqual(restored["ApiVersion"], "v2")

    def test_rejected_delete_fails_rollback(self):
        self.start_source()
        self.upload_and_wait(harness.make_study(1, 1))
        snapshot = self.take_snapshot("before b")
        self.move_to_partition(NEW_PARTITION)
        study_b = harness.make_study(1, 3)
        uids_b = uids_of(study_b)
        self.upload_and_wait(study_b)
        self.fake.fail_next(400, count=1, target="delete",
                            body="The DICOM instance is locked by another operation.")

        started = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]})
        job = self.source.wait_job(started["ID"], ROLLBACK_TIMEOUT_SECONDS)
        self.assertEqual(job["State"], "Failure", "a rollback with a rejected DELETE succeeded")
        rollback = self.wait_rollback_end()
        self.assertEqual(rollback["State"], "Failure", rollback)
        self.assertEqual(rollback["Failed"], 1, rollback)
        self.assertEqual(rollback["Deleted"], len(uids_b) - 1, rollback)
        self.assertEqual(rollback["Remaining"], 0, rollback)
        rejected = [request for request in self.fake.delete_requests()
                    if request["Status"] == 400]
        self.assertEqual(len(rejected), 1)
        uid = rejected[0]["SOPInstanceUID"]
        self.assertEqual(self.fake.stored_uids(NEW_PARTITION), {uid})
        item = self.items_by_uid()[uid]
        self.assertNotEqual(item["State"], "RolledBack", item)
        self.assertIn("locked", item["Message"], "the item does not show the service's message")
        self.assertEqual(self.settings()["Settings"]["Partition"], FILE_PARTITION,
                         "a failed DELETE must not undo the restored settings")

    def test_unrestorable_settings(self):
        self.start_source()
        self.source.post("/azure-dicom/pause")
        self.source.put_json("/azure-dicom/settings", {"ServiceUrl": REMOTE_SERVICE_URL})
        snapshot = self.take_snapshot("remote service")
        self.source.put_json("/azure-dicom/settings", {"ServiceUrl": None})
        self.source.post("/azure-dicom/resume")
        self.upload_and_wait(harness.make_study(1, 3))
        self.source.stop()
        # The file now rejects the snapshot's remote URL, because it leaves TLS unverified.
        self.source.azure["Tls"] = {"VerifyPeer": False}
        self.source.start()
        snapshot_count = len(self.snapshots())

        plan = self.rollback(snapshot["ID"], {"DryRun": True})
        self.assertIn("AzureDicom.Tls.VerifyPeer", plan["SettingsError"])
        response = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]},
                                 expected_status=400)
        self.assertIn("cannot be restored", response.text)
        self.assertIsNone(self.rollback_status())
        self.assertEqual(len(self.snapshots()), snapshot_count)
        self.assertNotEqual(self.settings()["Settings"]["ServiceUrl"], REMOTE_SERVICE_URL)

        self.source.stop()
        self.source.start()
        time.sleep(SETTLE_SECONDS)
        self.assertIsNone(self.rollback_status())
        self.assertEqual(self.fake.delete_requests(), [])

    def test_canceled_rollback(self):
        self.start_source()
        snapshot = self.take_snapshot("empty")
        self.move_to_partition(NEW_PARTITION)
        study_b = harness.make_study(2, 10)
        uids_b = uids_of(study_b)
        self.upload_and_wait(study_b)
        self.fake.delay_next(DELETE_DELAY_SECONDS, count=10 * len(uids_b), target="delete")

        started = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]})
        harness.wait_for(lambda: len(self.fake.delete_requests()) >= DELETES_BEFORE_KILL,
                         STATE_TIMEOUT_SECONDS, f"{DELETES_BEFORE_KILL} DELETEs",
                         describe_state=self.source.status)
        response = self.source.post(f"/jobs/{started['ID']}/cancel")
        self.assertEqual(response.status_code, 200, response.text)
        rollback = self.wait_rollback_end()
        self.assertEqual(rollback["State"], "Canceled", rollback)
        self.assertGreater(rollback["Remaining"], 0, rollback)
        time.sleep(SETTLE_SECONDS)
        deleted = {uid for request in self.fake.delete_requests() for uid in request["Deleted"]}
        self.assertEqual(self.fake.stored_uids(NEW_PARTITION), uids_b - deleted)
        self.assertEqual(rollback["Deleted"], len(deleted), rollback)

        # A canceled rollback no longer blocks a new one, which deletes the rest.
        self.move_to_partition(NEW_PARTITION)
        started = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]})
        self.assertEqual(started["Plan"]["Delete"]["Instances"], len(uids_b - deleted))
        self.assertEqual(self.wait_rollback_end()["State"], "Success")
        self.assertEqual(self.fake.stored_uids(NEW_PARTITION), set())

    def test_rollback_while_sending(self):
        self.start_source()
        self.upload_and_wait(harness.make_study(1, 1))
        snapshot = self.take_snapshot("before b")
        self.move_to_partition(NEW_PARTITION)
        self.fake.set_delay(SLOW_STOW_SECONDS)
        study_b = harness.make_study(1, 2)
        uids_b = uids_of(study_b)
        harness.upload_all(self.source, study_b)
        harness.wait_for(lambda: self.source.counts()["Sending"] > 0, STATE_TIMEOUT_SECONDS,
                         "a batch of study B in flight", describe_state=self.source.status,
                         interval=0.05)
        # The fake has read the request body by now and stores the instances after its delay.
        time.sleep(1)

        self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]})
        self.wait_rollback_end()
        time.sleep(SLOW_STOW_SECONDS + SETTLE_SECONDS)
        items = self.items_by_uid()
        left = self.fake.stored_uids(NEW_PARTITION) & uids_b
        # Status 0 is a request whose connection the client closed before the response.
        requests_to_b = [(request["Status"], request.get("Instances"))
                         for request in self.fake.stow_requests()
                         if request["Partition"] == NEW_PARTITION]
        self.assertEqual(left, set(),
                         "the rollback left copies that the plugin sent to partition b: "
                         f"{[(uid, items[uid]['State'], items[uid]['Message']) for uid in left]}"
                         f". STOW-RS requests to b (status, outcomes): {requests_to_b}")

    def run_killed_rollback(self, save_jobs):
        """Kill -9 Orthanc during a rollback of slow DELETEs and check that it finishes."""
        self.start_source(extra={"SaveJobs": save_jobs})
        study_a = harness.make_study(1, 2)
        self.upload_and_wait(study_a)
        snapshot = self.take_snapshot("before the move to b")
        self.move_to_partition(NEW_PARTITION)
        study_b = harness.make_study(KILL_SERIES, KILL_INSTANCES_PER_SERIES)
        uids_b = uids_of(study_b)
        self.upload_and_wait(study_b)
        self.assertEqual(self.fake.stored_uids(NEW_PARTITION), uids_b)

        plan = self.rollback(snapshot["ID"], {"DryRun": True})
        self.assertEqual(plan["Delete"]["Instances"], len(uids_b))
        self.assertEqual(len(plan["Delete"]["FirstItems"]), MAX_FIRST_ITEMS)

        self.fake.delay_next(DELETE_DELAY_SECONDS, count=10 * len(uids_b), target="delete")
        started = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]})
        self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]},
                      expected_status=409)
        harness.wait_for(lambda: len(self.fake.delete_requests()) >= DELETES_BEFORE_KILL,
                         STATE_TIMEOUT_SECONDS, f"{DELETES_BEFORE_KILL} DELETEs",
                         describe_state=self.source.status)
        self.assertEqual(self.rollback_status()["State"], "Running")
        self.source.kill()
        deleted_before_kill = {uid for request in self.fake.delete_requests()
                               for uid in request["Deleted"]}
        self.assertLess(len(deleted_before_kill), len(uids_b),
                        "the rollback ended before the kill, so the kill tested nothing")

        self.source.start()
        rollback = self.wait_rollback_end()
        self.assertEqual(rollback["State"], "Success", rollback)
        self.assertEqual(rollback["ID"], started["Rollback"])
        self.assertEqual(rollback["Total"], len(uids_b))
        self.assertEqual(rollback["Deleted"] + rollback["NotFound"], len(uids_b), rollback)
        self.assertEqual(rollback["Failed"], 0, rollback)
        self.assertEqual(rollback["Remaining"], 0, rollback)
        job = self.source.get_json(f"/jobs/{rollback['Job']}")
        self.assertEqual(job["Type"], "AzureDicomRollback")
        self.assertEqual(job["State"], "Success", job)

        self.assertEqual(self.fake.stored_uids(NEW_PARTITION), set(),
                         "instances of study B are left in partition b")
        self.assertTrue(uids_of(study_a) <= self.fake.stored_uids(FILE_PARTITION))
        deletes = self.fake.delete_requests()
        for request in deletes:
            self.assertEqual(request["Partition"], NEW_PARTITION, request)
            self.assertIn(request["SOPInstanceUID"], uids_b, request)
        for uid in uids_b:
            requests_for_uid = [request for request in deletes
                                if request["SOPInstanceUID"] == uid]
            deleting = [request for request in requests_for_uid if uid in request["Deleted"]]
            self.assertEqual(len(deleting), 1, f"{uid} was deleted {len(deleting)} times")
            # 0 is a request whose connection the kill cut before the response.
            others = {request["Status"] for request in requests_for_uid
                      if request not in deleting}
            self.assertLessEqual(others, {404, 0}, f"DELETEs of {uid}: {requests_for_uid}")
        items = self.items_by_uid()
        for uid in uids_b:
            self.assertEqual(items[uid]["State"], "RolledBack", items[uid])
        self.assertEqual(self.settings()["Settings"]["Partition"], FILE_PARTITION)

    def test_conflict_takes_no_snapshot(self):
        self.start_source()
        snapshot = self.take_snapshot("empty")
        study = harness.make_study(1, CONFLICT_INSTANCES)
        self.upload_and_wait(study)
        self.fake.delay_next(DELETE_DELAY_SECONDS, count=CONFLICT_INSTANCES, target="delete")
        self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]})
        snapshot_count = len(self.snapshots())

        response = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]},
                                 expected_status=409)
        self.assertIn("another rollback is running", response.text)
        self.assertEqual(len(self.snapshots()), snapshot_count)
        self.assertEqual(self.wait_rollback_end()["Deleted"], CONFLICT_INSTANCES)

    def test_plan_with_batch_in_flight(self):
        self.start_source()
        self.upload_and_wait(harness.make_study(1, 1))
        snapshot = self.take_snapshot("before the slow batch")
        self.fake.set_delay(SLOW_STOW_SECONDS)
        study = harness.make_study(1, IN_FLIGHT_INSTANCES)
        harness.upload_all(self.source, study)
        harness.wait_for(lambda: self.source.counts()["Sending"] > 0, STATE_TIMEOUT_SECONDS,
                         "a batch in flight", describe_state=self.source.status, interval=0.05)

        plan = self.rollback(snapshot["ID"], {})
        self.assertGreater(plan["InFlight"]["Instances"], 0, plan["InFlight"])
        self.assertIn("confirms", plan["InFlight"]["Message"])
        self.assertEqual(plan["Delete"]["Instances"], 0)
        self.assertEqual(plan["DroppedPending"]["Instances"] + plan["InFlight"]["Instances"],
                         IN_FLIGHT_INSTANCES)

        started = self.rollback(snapshot["ID"], {"DryRun": False, "Confirm": snapshot["ID"]})
        rollback = self.wait_rollback_end()
        marked = started["Plan"]
        self.assertEqual(marked["Delete"]["Instances"], rollback["Total"])
        self.assertEqual(marked["InFlight"]["Instances"], 0)
        self.assertEqual(len(self.fake.delete_requests()), marked["Delete"]["Instances"])
        self.assertEqual(self.source.counts()["Skipped"], marked["DroppedPending"]["Instances"])

    def test_killed_rollback_resumes(self):
        self.run_killed_rollback(save_jobs=True)

    def test_killed_rollback_without_saved_jobs(self):
        self.run_killed_rollback(save_jobs=False)


if __name__ == "__main__":
    harness.main()
