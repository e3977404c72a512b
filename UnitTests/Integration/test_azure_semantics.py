"""Mirror to the fake Azure DICOM service: its statuses, reasons and faults, one case a test.

The plugin authenticates with a client secret against the fake's token route (AuthorityHost
points at the fake) and sends to API v2. Every test checks at the end that the outbox agrees
with what the fake stored: Mirrored items were created by the plugin exactly once,
AlreadyPresent items were there before, Failed items are not stored.
"""

import collections
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

MIRROR_TIMEOUT_SECONDS = 120
STATE_TIMEOUT_SECONDS = 30
# Longer than the retry delays of harness.azure_section (0.2 s doubling up to 2 s) several
# times over, so that an item that would be retried has been by then.
SETTLE_SECONDS = 5
RETRY_AFTER_SECONDS = 1
# Slack on Retry-After for the plugin's scheduling and the fake's clock reads.
RETRY_AFTER_SLACK_SECONDS = 0.2
TOKEN_LIFETIME_SECONDS = 5
# A distinctive client secret, so that a leak into a log or a response is found by search.
SECRET = "secret-" + secrets.token_hex(16)
INSTANCE_BYTES = 50 * 1024
BODY_LIMIT_BYTES = 300 * 1024
LARGE_INSTANCE_BYTES = 300 * 1024
# Larger than MaxRequestSizeMB 1 on its own: it can only be sent alone.
OVERSIZED_INSTANCE_BYTES = 1536 * 1024


class AzureSemanticsTest(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.fake = fake_azure.FakeAzure(client_secret=SECRET).start()
        self.addCleanup(self.fake.stop)

    def start_source(self, client_secret=None, **settings):
        credentials = {
            "Type": "ClientSecret",
            "TenantId": self.fake.tenant,
            "ClientId": self.fake.client_id,
            "ClientSecret": client_secret or self.fake.client_secret,
            "AuthorityHost": self.fake.url,
        }
        section = harness.azure_section(self.fake.url, "v2", Credentials=credentials,
                                        **settings)
        source = harness.source_orthanc(self.path("source"), section)
        return self.add_orthanc(source).start()

    def upload_study(self, source, series=1, per_series=4, size=2048, patient_id=None):
        instances = harness.make_study(series, per_series, size, patient_id)
        ids = harness.upload_all(source, instances)
        return ids, [harness.sop_uid_of(data) for data in instances]

    def items_by_uid(self, source):
        return {item["SOPInstanceUID"]: item for item in harness.list_outbox(source)}

    def times_sent(self, uid, partition=fake_azure.DEFAULT_PARTITION):
        return sum(1 for request in self.fake.stow_requests()
                   if uid in request.get("Instances", {})
                   and request.get("Partition") == partition)

    def assert_outbox_matches_fake(self, source, partition=fake_azure.DEFAULT_PARTITION):
        items = harness.list_outbox(source)
        created = self.fake.creation_counts(partition)
        stored = self.fake.stored_uids(partition)
        for item in items:
            uid = item["SOPInstanceUID"]
            if item["State"] == "Mirrored":
                self.assertEqual(created.get(uid), 1, item)
            elif item["State"] == "AlreadyPresent":
                self.assertIn(uid, stored, item)
            elif item["State"] == "Failed":
                self.assertNotIn(uid, stored, item)
        self.assertEqual(set(created.values()) - {1}, set(),
                         f"instances created more than once: {created}")
        counts = collections.Counter(item["State"] for item in items)
        status_counts = source.counts()
        for state, count in counts.items():
            self.assertEqual(status_counts[state], count, status_counts)

    def test_all_stored_200(self):
        source = self.start_source()
        ids, uids = self.upload_study(source, series=2, per_series=3)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        self.assertEqual(self.fake.stored_uids(), set(uids))
        self.assertEqual(status["Destination"]["StowUrl"], self.fake.url + "/v2/studies")
        self.assertEqual(status["Credentials"]["Type"], "ClientSecret")
        self.assertIsNotNone(status["Credentials"]["TokenExpiresAt"])
        self.assertFalse(status["Credentials"]["LastError"])
        self.assertIn(self.fake.client_id, status["Credentials"]["Principal"])
        for path in ("/azure-dicom/status", "/azure-dicom/instances"):
            self.assertNotIn(SECRET, source.get(path).text, path)
        self.assertNotIn(SECRET, source.read_log())
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["StatusCode"], 200, item)
            self.assertEqual(item["Attempts"], 1, item)
        self.assert_outbox_matches_fake(source)

    def test_warning_202_mirrored(self):
        source = self.start_source()
        instances = harness.make_study(1, 3)
        warned = harness.sop_uid_of(instances[0])
        self.fake.set_warning([warned], fake_azure.WARNING_COERCED)
        harness.upload_all(source, instances)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=3)

        self.assertEqual(status["Counts"]["Mirrored"], 3)
        item = self.items_by_uid(source)[warned]
        self.assertEqual(item["State"], "Mirrored")
        self.assertEqual(item["WarningReason"], fake_azure.WARNING_COERCED)
        self.assertEqual(item["StatusCode"], 202)
        self.assert_outbox_matches_fake(source)

    def test_existing_instance_already_present(self):
        source = self.start_source()
        instances = harness.make_study(1, 3)
        existing = harness.sop_uid_of(instances[1])
        self.fake.preload(instances[1])
        harness.upload_all(source, instances)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=3)

        self.assertEqual(status["Counts"]["AlreadyPresent"], 1)
        self.assertEqual(status["Counts"]["Mirrored"], 2)
        item = self.items_by_uid(source)[existing]
        self.assertEqual(item["State"], "AlreadyPresent")
        self.assertEqual(item["FailureReason"], fake_azure.REASON_ALREADY_EXISTS)
        self.assertNotIn(existing, self.fake.creation_counts())
        time.sleep(SETTLE_SECONDS)
        self.assertEqual(self.times_sent(existing), 1)
        self.assert_outbox_matches_fake(source)

    def test_validation_failure_not_retried(self):
        source = self.start_source()
        invalid_ids, invalid_uids = self.upload_study(source, per_series=1, patient_id="INVALID")
        valid_ids, _ = self.upload_study(source, per_series=2)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=3)
        time.sleep(SETTLE_SECONDS)

        self.assertEqual(status["Counts"]["Failed"], 1)
        self.assertEqual(status["Counts"]["Mirrored"], len(valid_ids))
        item = self.items_by_uid(source)[invalid_uids[0]]
        self.assertEqual(item["State"], "Failed")
        self.assertEqual(item["FailureReason"], fake_azure.REASON_VALIDATION_FAILED)
        self.assertEqual(item["Attempts"], 1)
        self.assertEqual(self.times_sent(invalid_uids[0]), 1)
        failed = source.get_json("/azure-dicom/instances?state=Failed")["Items"]
        self.assertEqual([failed_item["ID"] for failed_item in failed], invalid_ids)
        self.assert_outbox_matches_fake(source)

        response = source.post_json("/azure-dicom/retry", {"State": "Failed"})
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json()["Requeued"], 1)
        harness.wait_for(lambda: self.times_sent(invalid_uids[0]) == 2, STATE_TIMEOUT_SECONDS,
                         "the requeued instance to be sent again", describe_state=source.status)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=3)
        self.assertEqual(self.items_by_uid(source)[invalid_uids[0]]["State"], "Failed")

        response = source.post_json("/azure-dicom/retry", {"Resources": invalid_ids})
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json()["Requeued"], 1)
        harness.wait_for(lambda: self.times_sent(invalid_uids[0]) == 3, STATE_TIMEOUT_SECONDS,
                         "the instance requeued by id to be sent again",
                         describe_state=source.status)

    def test_unparsed_part_failed(self):
        # pydicom's rtstruct.dcm has no preamble: Orthanc stores it as received, and the fake,
        # as the Azure DICOM service, fails the part that it cannot parse without naming its UID.
        with open(os.path.join(harness.PYDICOM_TEST_FILES, "rtstruct.dcm"), "rb") as sample:
            data = sample.read()
        source = self.start_source()
        ids = harness.upload_all(source, [data])
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=1)

        item = harness.list_outbox(source)[0]
        self.assertEqual(item["ID"], ids[0])
        self.assertEqual(item["State"], "Failed", item)
        self.assertEqual(item["FailureReason"], fake_azure.REASON_VALIDATION_FAILED, item)
        self.assertEqual(item["Attempts"], 1, item)
        self.assertEqual(len(self.fake.stow_requests()), 1)
        self.assert_outbox_matches_fake(source)

    def test_429_waits_retry_after(self):
        # One worker, so that requests are sequential and each one follows the previous response.
        source = self.start_source(Workers=1)
        self.fake.fail_next(429, count=3, retry_after=RETRY_AFTER_SECONDS)
        ids, _ = self.upload_study(source, per_series=3)
        waiting = harness.wait_for(lambda: source.status()["State"] == "Waiting",
                                   STATE_TIMEOUT_SECONDS, "status State Waiting during 429s",
                                   describe_state=source.status, interval=0.05)
        self.assertTrue(waiting)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        self.assertEqual(status["State"], "Running")
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["Attempts"], 1, item)
        statuses = [request["Status"] for request in self.fake.stow_requests()]
        self.assertEqual(statuses[:3], [429, 429, 429])
        times = [request["Time"] for request in self.fake.stow_requests()]
        for earlier, later in zip(times[:3], times[1:4]):
            self.assertGreaterEqual(later - earlier,
                                    RETRY_AFTER_SECONDS - RETRY_AFTER_SLACK_SECONDS)
        self.assert_outbox_matches_fake(source)

    def test_503_burst_then_success(self):
        source = self.start_source()
        self.fake.fail_next(503, count=5)
        ids, _ = self.upload_study(source, per_series=4)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        self.assertEqual(status["Counts"]["Failed"], 0)
        self.assertEqual(sum(1 for request in self.fake.stow_requests()
                             if request["Status"] == 503), 5)
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["Attempts"], 1, item)
        self.assertIsNotNone(status["LastError"])
        self.assertEqual(status["LastError"]["StatusCode"], 503)
        self.assertTrue(status["LastError"]["Message"])
        self.assertTrue(status["LastError"]["Time"])
        self.assert_outbox_matches_fake(source)

    def test_403_waits_then_stores(self):
        source = self.start_source()
        self.fake.fail_next(403, count=2, body="Forbidden: the principal has no DICOM role")
        ids, _ = self.upload_study(source, per_series=3)
        harness.wait_for(lambda: source.status()["State"] == "Waiting", STATE_TIMEOUT_SECONDS,
                         "status State Waiting after 403", describe_state=source.status,
                         interval=0.05)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        self.assertEqual(status["LastError"]["StatusCode"], 403)
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["Attempts"], 1, item)
        self.assert_outbox_matches_fake(source)

    def test_404_pauses_without_failures(self):
        source = self.start_source()
        self.fake.fail_next(404, count=3, body="The requested partition was not found.")
        ids, _ = self.upload_study(source, per_series=3)

        def stopped_sending():
            status = source.status()
            return status["State"] in ("Waiting", "Paused") and status["PauseReason"]

        harness.wait_for(stopped_sending, STATE_TIMEOUT_SECONDS,
                         "status Waiting or Paused with a reason after 404",
                         describe_state=source.status, interval=0.05)
        self.assertEqual(source.counts()["Failed"], 0)

        # Whether the plugin retries a 404 by itself or waits for an operator, resume ends it.
        source.post("/azure-dicom/resume")
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))
        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["Attempts"], 1, item)
        self.assert_outbox_matches_fake(source)

    def test_service_outage_recovers(self):
        source = self.start_source()
        first_ids, _ = self.upload_study(source, per_series=2)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(first_ids))

        # The service goes away (connections refused), then a new one, which has none of the
        # old tokens, comes back on the same port.
        port = self.fake.port
        self.fake.stop()
        second_ids, second_uids = self.upload_study(source, per_series=3)
        harness.wait_for(lambda: source.status()["State"] == "Waiting", STATE_TIMEOUT_SECONDS,
                         "status State Waiting while the service is down",
                         describe_state=source.status)
        time.sleep(SETTLE_SECONDS)
        status = source.status()
        self.assertEqual(status["Counts"]["Failed"], 0)
        self.assertEqual(status["Counts"]["Pending"] + status["Counts"]["Sending"],
                         len(second_ids))
        self.assertTrue(status["LastError"]["Message"])

        self.fake = fake_azure.FakeAzure(port=port, client_secret=SECRET).start()
        self.addCleanup(self.fake.stop)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS,
                                         expected_total=len(first_ids) + len(second_ids))
        self.assertEqual(status["Counts"]["Mirrored"], len(first_ids) + len(second_ids))
        self.assertEqual(self.fake.stored_uids(), set(second_uids))
        for uid in second_uids:
            self.assertEqual(self.items_by_uid(source)[uid]["Attempts"], 1)

    def test_token_expiry_refreshed(self):
        self.fake.set_token_lifetime(TOKEN_LIFETIME_SECONDS)
        source = self.start_source()
        first_ids, _ = self.upload_study(source, per_series=2)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(first_ids))
        time.sleep(TOKEN_LIFETIME_SECONDS + 1)
        second_ids, _ = self.upload_study(source, per_series=2)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS,
                                         expected_total=len(first_ids) + len(second_ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(first_ids) + len(second_ids))
        self.assertGreaterEqual(self.fake.state()["TokensIssued"], 2)
        self.assert_outbox_matches_fake(source)

    def test_rejected_token_refreshed(self):
        source = self.start_source()
        first_ids, _ = self.upload_study(source, per_series=2)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(first_ids))
        issued = self.fake.state()["TokensIssued"]
        self.fake.revoke_tokens()
        second_ids, _ = self.upload_study(source, per_series=2)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS,
                                         expected_total=len(first_ids) + len(second_ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(first_ids) + len(second_ids))
        self.assertEqual(status["Counts"]["Failed"], 0)
        self.assertIn(401, [request["Status"] for request in self.fake.stow_requests()])
        self.assertEqual(self.fake.state()["TokensIssued"], issued + 1)
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["Attempts"], 1, item)
        self.assert_outbox_matches_fake(source)

    def test_wrong_secret_waits(self):
        source = self.start_source(client_secret="not-the-secret")
        ids, _ = self.upload_study(source, per_series=3)

        def waiting_with_aadsts():
            status = source.status()
            errors = str(status["LastError"]) + str(status["Credentials"]["LastError"])
            return status["State"] == "Waiting" and "AADSTS7000215" in errors

        harness.wait_for(waiting_with_aadsts, STATE_TIMEOUT_SECONDS,
                         "status Waiting with AADSTS7000215", describe_state=source.status)
        time.sleep(SETTLE_SECONDS)
        status = source.status()
        self.assertEqual(status["State"], "Waiting")
        self.assertEqual(status["Counts"]["Failed"], 0)
        self.assertEqual(status["Counts"]["Pending"] + status["Counts"]["Sending"], len(ids))
        self.assertNotIn("not-the-secret", source.get("/azure-dicom/status").text)
        self.assertNotIn("not-the-secret", source.read_log())
        self.assertEqual(self.fake.stow_requests(), [])

        # Rotating the application's secret to the configured value ends the outage.
        self.fake.set_client_secret("not-the-secret")
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))
        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["Attempts"], 1, item)
        self.assert_outbox_matches_fake(source)

    def test_413_splits_batch(self):
        self.fake.set_max_body_bytes(BODY_LIMIT_BYTES)
        source = self.start_source()
        # Pause while uploading, so that the plugin claims full batches from one backlog.
        source.post("/azure-dicom/pause")
        ids, uids = self.upload_study(source, per_series=12, size=INSTANCE_BYTES)
        harness.wait_for(lambda: source.counts()["Pending"] == len(ids), STATE_TIMEOUT_SECONDS,
                         "the instances to be queued", describe_state=source.status)
        source.post("/azure-dicom/resume")
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        self.assertEqual(self.fake.stored_uids(), set(uids))
        requests_seen = self.fake.stow_requests()
        self.assertIn(413, [request["Status"] for request in requests_seen])
        for request in requests_seen:
            if request["Status"] == 200:
                self.assertLessEqual(request["Bytes"], BODY_LIMIT_BYTES)
        self.assert_outbox_matches_fake(source)

    def test_batch_limits_respected(self):
        max_instances = 4
        source = self.start_source(MaxInstancesPerRequest=max_instances, MaxRequestSizeMB=1)
        source.post("/azure-dicom/pause")
        small_ids, _ = self.upload_study(source, per_series=10)
        large_ids, _ = self.upload_study(source, per_series=6, size=LARGE_INSTANCE_BYTES)
        oversized_ids, oversized_uids = self.upload_study(source, per_series=1,
                                                          size=OVERSIZED_INSTANCE_BYTES)
        total = len(small_ids) + len(large_ids) + len(oversized_ids)
        harness.wait_for(lambda: source.counts()["Pending"] == total, STATE_TIMEOUT_SECONDS,
                         "the instances to be queued", describe_state=source.status)
        source.post("/azure-dicom/resume")
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=total)

        self.assertEqual(status["Counts"]["Mirrored"], total)
        for request in self.fake.stow_requests():
            sent = request.get("Instances", {})
            self.assertLessEqual(len(sent), max_instances, request)
            if len(sent) > 1:
                self.assertLessEqual(request["Bytes"], 1024 * 1024, request)
        oversized_requests = [request for request in self.fake.stow_requests()
                              if oversized_uids[0] in request.get("Instances", {})]
        self.assertEqual(len(oversized_requests), 1)
        self.assertEqual(len(oversized_requests[0]["Instances"]), 1)
        self.assert_outbox_matches_fake(source)

    def test_unconfirmed_retried(self):
        source = self.start_source()
        instances = harness.make_study(1, 3)
        dropped = harness.sop_uid_of(instances[0])
        self.fake.set_dropped([dropped], count=2)
        harness.upload_all(source, instances)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=3)

        self.assertEqual(status["Counts"]["Mirrored"], 3)
        self.assertEqual(self.times_sent(dropped), 3)
        item = self.items_by_uid(source)[dropped]
        self.assertEqual(item["State"], "Mirrored")
        self.assertEqual(item["Attempts"], 3)
        self.assert_outbox_matches_fake(source)

    def test_unconfirmed_but_stored(self):
        # The service stored the instance but left it out of its response: the plugin must not
        # count it as Mirrored, and the resend finds it there (45070).
        source = self.start_source()
        instances = harness.make_study(1, 2)
        dropped = harness.sop_uid_of(instances[0])
        self.fake.set_dropped([dropped], count=1, store=True)
        harness.upload_all(source, instances)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=2)

        self.assertEqual(status["Counts"]["Mirrored"], 1)
        self.assertEqual(status["Counts"]["AlreadyPresent"], 1)
        self.assertEqual(self.items_by_uid(source)[dropped]["State"], "AlreadyPresent")
        self.assertEqual(self.times_sent(dropped), 2)
        self.assertEqual(self.fake.creation_counts()[dropped], 1)
        self.assert_outbox_matches_fake(source)

    def test_api_v1(self):
        source = self.start_source(ApiVersion="v1")
        ids, uids = self.upload_study(source, per_series=3)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        self.assertEqual(status["Destination"]["StowUrl"], self.fake.url + "/v1/studies")
        self.assertEqual(self.fake.stored_uids(), set(uids))
        self.assertEqual({request["Path"] for request in self.fake.stow_requests()},
                         {"/v1/studies"})
        self.assert_outbox_matches_fake(source)

    def test_being_created_retried(self):
        source = self.start_source()
        instances = harness.make_study(1, 2)
        busy = harness.sop_uid_of(instances[0])
        self.fake.set_being_created([busy], count=2)
        harness.upload_all(source, instances)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=2)

        self.assertEqual(status["Counts"]["Mirrored"], 2)
        self.assertEqual(self.times_sent(busy), 3)
        self.assertEqual(self.fake.creation_counts()[busy], 1)
        self.assert_outbox_matches_fake(source)

    def test_processing_failure_retried(self):
        source = self.start_source()
        instances = harness.make_study(1, 2)
        flaky = harness.sop_uid_of(instances[0])
        self.fake.set_processing_failure([flaky], count=1)
        harness.upload_all(source, instances)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=2)

        self.assertEqual(status["Counts"]["Mirrored"], 2)
        self.assertEqual(self.times_sent(flaky), 2)
        self.assert_outbox_matches_fake(source)

    def test_processing_failure_exhausted(self):
        max_attempts = 3
        source = self.start_source(Retry={"InitialDelaySeconds": 0.2, "MaxDelaySeconds": 1,
                                          "MaxAttempts": max_attempts})
        instances = harness.make_study(1, 1)
        broken = harness.sop_uid_of(instances[0])
        self.fake.set_processing_failure([broken], count=100)
        harness.upload_all(source, instances)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=1)
        time.sleep(SETTLE_SECONDS)

        self.assertEqual(status["Counts"]["Failed"], 1)
        item = self.items_by_uid(source)[broken]
        self.assertEqual(item["FailureReason"], fake_azure.REASON_PROCESSING_FAILURE)
        self.assertEqual(item["Attempts"], max_attempts)
        self.assertEqual(self.times_sent(broken), max_attempts)
        self.assert_outbox_matches_fake(source)

    def test_partition_in_url(self):
        partition = "site-a"
        source = self.start_source(Partition=partition)
        ids, uids = self.upload_study(source, per_series=3)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        self.assertEqual(status["Destination"]["Partition"], partition)
        self.assertEqual(status["Destination"]["StowUrl"],
                         f"{self.fake.url}/v2/partitions/{partition}/studies")
        self.assertEqual(self.fake.stored_uids(partition), set(uids))
        self.assertEqual(self.fake.stored_uids(), set())
        self.assert_outbox_matches_fake(source, partition)

    def test_reset_connection_retried(self):
        source = self.start_source()
        self.fake.reset_next(count=2)
        ids, uids = self.upload_study(source, per_series=3, size=INSTANCE_BYTES)
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=len(ids))

        self.assertEqual(status["Counts"]["Mirrored"], len(ids))
        self.assertEqual(self.fake.stored_uids(), set(uids))
        self.assertEqual(status["Counts"]["Failed"], 0)
        self.assert_outbox_matches_fake(source)


if __name__ == "__main__":
    harness.main()
