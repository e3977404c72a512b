"""Runtime settings of the mirror: GET and PUT /azure-dicom/settings, pause, and snapshots.

The source Orthanc mirrors to the fake Azure DICOM service (API v2, partition "a", a client
secret). A PUT must apply at once to the instances queued next and survive a restart of
Orthanc. It takes a snapshot of the settings it replaces. Every body that the configuration
file would reject gets a 400 whose message names the key.
"""

import datetime
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

MIRROR_TIMEOUT_SECONDS = 120
STATE_TIMEOUT_SECONDS = 30
# Long enough for a worker to pick up a queued instance, so that nothing sent by then means
# that nothing is sent while paused.
SETTLE_SECONDS = 4
SERVICE_DELAY_SECONDS = 0.3
# Nesting of JSON arrays that overflowed the stack of an Orthanc HTTP thread before the limit.
DEEP_NESTING = 500
FILE_PARTITION = "a"
FILE_WORKERS = 2
SECRET = "secret-" + secrets.token_hex(16)
RUNTIME_KEYS = {"ServiceUrl", "ApiVersion", "Partition", "Workers", "MaxInstancesPerRequest",
                "MaxRequestSizeMB", "Credentials.KeyVault.SecretVersion", "Paused"}


def max_concurrent(requests_seen):
    """Return the largest number of the requests that the fake was handling at one time."""
    events = []
    for request in requests_seen:
        events.append((request["Time"], 1))
        events.append((request["EndTime"], -1))
    # At equal times an end sorts before a start, so back-to-back requests do not overlap.
    events.sort()
    current = 0
    largest = 0
    for _, change in events:
        current += change
        largest = max(largest, current)
    return largest


class SettingsTest(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.fake = fake_azure.FakeAzure(client_secret=SECRET).start()
        self.addCleanup(self.fake.stop)

    def start_source(self, **settings):
        credentials = {
            "Type": "ClientSecret",
            "TenantId": self.fake.tenant,
            "ClientId": self.fake.client_id,
            "ClientSecret": SECRET,
            "AuthorityHost": self.fake.url,
        }
        options = {"Partition": FILE_PARTITION, "Workers": FILE_WORKERS,
                   "Credentials": credentials}
        options.update(settings)
        section = harness.azure_section(self.fake.url, "v2", **options)
        self.source = self.add_orthanc(harness.source_orthanc(self.path("source"), section))
        return self.source.start()

    def restart(self):
        self.source.stop()
        self.source.start()

    def settings(self):
        return self.source.get_json("/azure-dicom/settings")

    def put_settings(self, body, expected_status=200):
        response = self.source.put_json("/azure-dicom/settings", body)
        self.assertEqual(response.status_code, expected_status,
                         f"PUT /azure-dicom/settings {body} returned {response.status_code}: "
                         f"{response.text[:500]}")
        return response.json() if expected_status == 200 else response

    def snapshots(self):
        return self.source.get_json("/azure-dicom/snapshots")["Snapshots"]

    def mirror_study(self, instances=3):
        """Upload a new study, wait until the outbox is idle, and return its SOP Instance UIDs."""
        data = harness.make_study(1, instances)
        total = len(harness.list_outbox(self.source)) + instances
        harness.upload_all(self.source, data)
        self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=total)
        return {harness.sop_uid_of(instance) for instance in data}

    def items_by_uid(self):
        return {item["SOPInstanceUID"]: item for item in harness.list_outbox(self.source)}

    def test_settings_get_shape(self):
        self.start_source()
        response = self.source.get("/azure-dicom/settings")
        self.assertEqual(response.status_code, 200, response.text)
        self.assertNotIn(SECRET, response.text, "GET /azure-dicom/settings shows the secret")
        answer = response.json()

        settings = answer["Settings"]
        self.assertEqual(settings["ServiceUrl"], self.fake.url)
        self.assertEqual(settings["ApiVersion"], "v2")
        self.assertEqual(settings["Partition"], FILE_PARTITION)
        self.assertEqual(settings["Workers"], FILE_WORKERS)
        self.assertEqual(settings["Credentials"]["Type"], "ClientSecret")
        self.assertEqual(settings["Credentials"]["ClientSecret"], "<redacted>")
        self.assertIs(answer["Paused"], False)
        self.assertEqual(set(answer["RuntimeKeys"]), RUNTIME_KEYS)
        self.assertEqual(answer["Overridden"], {})

    def test_partition_change_applies_live(self):
        self.start_source()
        first = self.mirror_study()
        self.assertEqual(self.fake.stored_uids(FILE_PARTITION), first)

        answer = self.put_settings({"Partition": "b", "Workers": 3})
        self.assertEqual(sorted(answer["Changed"]), ["Partition", "Workers"])
        self.assertEqual(answer["Settings"]["Partition"], "b")
        self.assertEqual(answer["Settings"]["Workers"], 3)
        self.assertEqual(answer["Overridden"], {"Partition": "b", "Workers": 3})
        self.assertIsNotNone(answer["Snapshot"], "a change must take a snapshot")
        self.assertEqual(answer["Snapshot"]["Reason"], "SettingsChange")
        self.assertEqual(answer["Snapshot"]["Settings"]["Partition"], FILE_PARTITION)
        self.assertEqual(answer["Snapshot"]["Settings"]["Workers"], FILE_WORKERS)
        destination = self.source.status()["Destination"]
        self.assertEqual(destination["Partition"], "b")
        self.assertEqual(destination["StowUrl"], f"{self.fake.url}/v2/partitions/b/studies")

        second = self.mirror_study()
        self.assertEqual(self.fake.stored_uids("b"), second,
                         "instances queued after the PUT must go to partition b")
        self.assertEqual(self.fake.stored_uids(FILE_PARTITION), first)
        items = self.items_by_uid()
        for uid in first:
            self.assertEqual(items[uid]["SentTo"], {"ServiceUrl": self.fake.url,
                                                    "ApiVersion": "v2",
                                                    "Partition": FILE_PARTITION}, items[uid])
        for uid in second:
            self.assertEqual(items[uid]["SentTo"], {"ServiceUrl": self.fake.url,
                                                    "ApiVersion": "v2", "Partition": "b"},
                             items[uid])
            self.assertIs(items[uid]["CreatedAtService"], True, items[uid])

        self.restart()
        after_restart = self.settings()
        self.assertEqual(after_restart["Settings"]["Partition"], "b",
                         "Partition lost at the restart")
        self.assertEqual(after_restart["Settings"]["Workers"], 3, "Workers lost at the restart")
        self.assertEqual(after_restart["Overridden"], {"Partition": "b", "Workers": 3})
        third = self.mirror_study()
        self.assertEqual(self.fake.stored_uids("b"), second | third)

        answer = self.put_settings({"Partition": None, "Workers": None})
        self.assertEqual(sorted(answer["Changed"]), ["Partition", "Workers"])
        self.assertEqual(answer["Settings"]["Partition"], FILE_PARTITION,
                         "null must return Partition to the file's value")
        self.assertEqual(answer["Settings"]["Workers"], FILE_WORKERS)
        self.assertEqual(answer["Overridden"], {})
        fourth = self.mirror_study()
        self.assertEqual(self.fake.stored_uids(FILE_PARTITION), first | fourth)

        self.restart()
        self.assertEqual(self.settings()["Overridden"], {},
                         "a key returned to the file's value must stay so after a restart")

    def test_null_follows_edited_file(self):
        self.start_source()
        self.put_settings({"Partition": "b"})
        self.source.stop()
        self.source.azure["Partition"] = "c"
        self.source.start()
        settings = self.settings()
        self.assertEqual(settings["Settings"]["Partition"], "b",
                         "the runtime value must win over the edited file")
        self.assertEqual(settings["Overridden"], {"Partition": "b"})

        answer = self.put_settings({"Partition": None})
        self.assertEqual(answer["Settings"]["Partition"], "c",
                         "null must return to the file's value at this start")
        self.assertEqual(answer["Overridden"], {})
        self.assertEqual(self.mirror_study(1), self.fake.stored_uids("c"))

    def test_api_version_and_url_live(self):
        other = fake_azure.FakeAzure(require_auth=False).start()
        self.addCleanup(other.stop)
        self.start_source()
        self.mirror_study(1)

        self.put_settings({"ApiVersion": "v1"})
        self.assertEqual(self.source.status()["Destination"]["StowUrl"],
                         f"{self.fake.url}/v1/partitions/{FILE_PARTITION}/studies")
        marker = len(self.fake.stow_requests())
        self.mirror_study(1)
        paths = {request["Path"] for request in self.fake.stow_requests()[marker:]}
        self.assertEqual(paths, {f"/v1/partitions/{FILE_PARTITION}/studies"})

        self.put_settings({"ServiceUrl": other.url, "ApiVersion": None})
        marker = len(self.fake.stow_requests())
        uids = self.mirror_study(2)
        self.assertEqual(other.stored_uids(FILE_PARTITION), uids,
                         "instances queued after the PUT must go to the new ServiceUrl")
        self.assertEqual(self.fake.stow_requests()[marker:], [],
                         "the old ServiceUrl got requests after the PUT")
        for uid in uids:
            self.assertEqual(self.items_by_uid()[uid]["SentTo"]["ServiceUrl"], other.url)

    def test_workers_and_batch_live(self):
        self.fake.set_delay(SERVICE_DELAY_SECONDS)
        self.start_source(Workers=4, MaxInstancesPerRequest=1)

        def send_paused_batch(instances):
            self.source.post("/azure-dicom/pause")
            total = len(harness.list_outbox(self.source)) + instances
            harness.upload_all(self.source, harness.make_study(1, instances))
            harness.wait_for(lambda: self.source.counts()["Pending"] == instances,
                             STATE_TIMEOUT_SECONDS, f"{instances} pending instances",
                             describe_state=self.source.status)
            marker = len(self.fake.stow_requests())
            self.source.post("/azure-dicom/resume")
            self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=total)
            return self.fake.stow_requests()[marker:]

        self.put_settings({"Workers": 1})
        sent = send_paused_batch(6)
        self.assertEqual(max_concurrent(sent), 1, "Workers 1 must send one request at a time")

        answer = self.put_settings({"Workers": 3, "MaxInstancesPerRequest": 2})
        self.assertEqual(sorted(answer["Changed"]), ["MaxInstancesPerRequest", "Workers"])
        sent = send_paused_batch(12)
        largest = max(len(request.get("Instances", {})) for request in sent)
        self.assertEqual(largest, 2, "MaxInstancesPerRequest 2 must fill batches of 2")
        concurrent = max_concurrent(sent)
        self.assertGreaterEqual(concurrent, 2, "Workers 3 never sent two requests at once")
        self.assertLessEqual(concurrent, 3, "more requests at once than Workers 3")

    def test_invalid_bodies_rejected(self):
        self.start_source()
        before = self.settings()
        snapshots_before = self.snapshots()
        cases = [
            ({"Unknown": 1}, "Unknown"),
            ({"Retry": {"MaxAttempts": 3}}, "AzureDicom.Retry"),
            ({"RequestTimeoutSeconds": 10}, "AzureDicom.RequestTimeoutSeconds"),
            ({"Credentials": {"Type": "None"}}, "Credentials.Type"),
            ({"Workers": 0}, "AzureDicom.Workers"),
            ({"Workers": 65}, "AzureDicom.Workers"),
            ({"Workers": "many"}, "AzureDicom.Workers"),
            ({"MaxInstancesPerRequest": 1001}, "AzureDicom.MaxInstancesPerRequest"),
            ({"MaxRequestSizeMB": 0}, "AzureDicom.MaxRequestSizeMB"),
            ({"ApiVersion": "v9"}, "AzureDicom.ApiVersion"),
            # Only checked: a non-loopback http:// URL is rejected before anything is sent.
            ({"ServiceUrl": "http://example.invalid"}, "AzureDicom.ServiceUrl"),
            ({"Paused": "maybe"}, "Paused"),
            # One invalid key rejects the whole body, so Partition must not change either.
            ({"Partition": "c", "Workers": 0}, "AzureDicom.Workers"),
        ]
        for body, key in cases:
            with self.subTest(body=body):
                response = self.put_settings(body, expected_status=400)
                self.assertIn(key, response.text,
                              f"the 400 for {body} does not name {key}: {response.text[:300]}")

        for text in ("not JSON", "[1, 2]", '"Partition"'):
            with self.subTest(body=text):
                response = self.source.request("PUT", "/azure-dicom/settings", data=text)
                self.assertEqual(response.status_code, 400,
                                 f"PUT {text!r} returned {response.status_code}: "
                                 f"{response.text[:300]}")

        # Every route of the plugin reads an empty body as {}, which changes nothing.
        response = self.source.request("PUT", "/azure-dicom/settings", data="")
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json()["Changed"], [])
        self.assertIsNone(response.json()["Snapshot"])

        self.assertEqual(self.settings(), before, "a rejected PUT changed the settings")
        self.assertEqual(self.snapshots(), snapshots_before, "a rejected PUT took a snapshot")
        self.assertEqual(self.source.status()["Destination"]["ServiceUrl"], self.fake.url)

    def test_dotted_key_rejected(self):
        self.fake.set_vault_secret("dicom-secret", SECRET)
        vault = {"VaultUrl": self.fake.url, "SecretName": "dicom-secret",
                 "Credentials": {"Type": "ManagedIdentity"}}
        credentials = {"Type": "ClientSecret", "TenantId": self.fake.tenant,
                       "ClientId": self.fake.client_id, "AuthorityHost": self.fake.url,
                       "KeyVault": vault}
        self.source = self.add_orthanc(harness.source_orthanc(
            self.path("source"), harness.azure_section(self.fake.url, "v2",
                                                       Credentials=credentials),
            environment={"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.fake.identity_url}))
        self.source.start()
        before = self.settings()
        cases = [
            ({"Credentials.KeyVault.SecretVersion": "0123456789abcdef0123456789abcdef"},
             "AzureDicom.Credentials.KeyVault.SecretVersion"),
            ({"Credentials": {"KeyVault.SecretVersion": None}},
             "AzureDicom.Credentials.KeyVault.SecretVersion"),
        ]
        for body, key in cases:
            with self.subTest(body=body):
                response = self.put_settings(body, expected_status=400)
                self.assertIn(key, response.text)
                self.assertIn("The keys that can change are", response.text)
        self.assertIsNone(self.source.process.poll(), "Orthanc ended after a dotted key")
        self.assertEqual(self.settings(), before, "a rejected PUT changed the settings")

    def test_deeply_nested_body_rejected(self):
        self.start_source()
        nested = "[" * DEEP_NESTING + "]" * DEEP_NESTING
        requests_to_send = [
            ("PUT", "/azure-dicom/settings", '{"Workers": ' + nested + "}"),
            ("POST", "/azure-dicom/retry", '{"Resources": ' + nested + "}"),
            ("POST", "/azure-dicom/sync", '{"Resources": ' + nested + "}"),
            ("POST", "/azure-dicom/snapshots", nested),
        ]
        for method, path, body in requests_to_send:
            with self.subTest(method=method, path=path):
                response = self.source.request(method, path, data=body,
                                               headers={"Content-Type": "application/json"})
                self.assertEqual(response.status_code, 400, response.text[:300])
                self.assertIn("nests more than", response.text)
        self.assertEqual(self.source.get("/system").status_code, 200)
        self.assertIsNone(self.source.process.poll(), "Orthanc ended after a nested body")

    def test_pause_value_forms(self):
        self.start_source()
        self.assertIs(self.put_settings({"Paused": "true"})["Paused"], True)
        self.assertIs(self.settings()["Paused"], True)
        self.assertIs(self.put_settings({"Paused": "false"})["Paused"], False)
        self.assertIs(self.put_settings({"Paused": True})["Paused"], True)
        self.assertIs(self.put_settings({"Paused": None})["Paused"], False)
        self.assertIs(self.settings()["Paused"], False)

        for value, description in [("maybe", '"maybe"'), (1, "1"), ([True], "(an array)")]:
            with self.subTest(value=value):
                response = self.put_settings({"Paused": value}, expected_status=400)
                message = response.json()["Message"]
                self.assertIn(f"invalid value {description}", message)
                self.assertIn('"Paused"', message)
        self.assertIs(self.settings()["Paused"], False)

    def test_pause_routes_check_body(self):
        self.start_source()
        for path in ("/azure-dicom/pause", "/azure-dicom/resume"):
            for body, fragment in [("garbage", "not valid JSON"), ('{"Reason": "x"}', '"Reason"'),
                                   ("[]", "must be a JSON object")]:
                with self.subTest(path=path, body=body):
                    response = self.source.post(path, data=body)
                    self.assertEqual(response.status_code, 400, response.text)
                    self.assertIn(fragment, response.json()["Message"])
                    self.assertIs(self.settings()["Paused"], False)

        self.assertEqual(self.source.post("/azure-dicom/pause", data="{}").status_code, 200)
        self.assertIs(self.settings()["Paused"], True)
        self.assertEqual(self.source.post("/azure-dicom/resume").status_code, 200)
        self.assertIs(self.settings()["Paused"], False)

    def test_pause_kept_across_restart(self):
        self.start_source()
        answer = self.put_settings({"Paused": True})
        self.assertEqual(answer["Changed"], ["Paused"])
        self.assertIs(answer["Paused"], True)
        self.assertIsNotNone(answer["Snapshot"])
        self.assertIs(answer["Snapshot"]["Paused"], False)

        self.restart()
        self.assertIs(self.settings()["Paused"], True, "a pause set by PUT ended at the restart")
        self.assertEqual(self.source.status()["State"], "Paused")
        data = harness.make_study(1, 2)
        harness.upload_all(self.source, data)
        harness.wait_for(lambda: self.source.counts()["Pending"] == 2, STATE_TIMEOUT_SECONDS,
                         "2 pending instances", describe_state=self.source.status)
        time.sleep(SETTLE_SECONDS)
        self.assertEqual(self.fake.stow_requests(), [], "sent while paused")

        self.put_settings({"Paused": False})
        self.source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=2)
        self.assertEqual(self.fake.stored_uids(FILE_PARTITION),
                         {harness.sop_uid_of(instance) for instance in data})

        snapshot_count = len(self.snapshots())
        response = self.source.post("/azure-dicom/pause")
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(len(self.snapshots()), snapshot_count, "POST /pause took a snapshot")
        self.assertIs(self.settings()["Paused"], True)
        self.restart()
        self.assertIs(self.settings()["Paused"], True,
                      "a pause set by POST /pause ended at the restart")
        self.assertEqual(self.source.status()["State"], "Paused")

        response = self.source.post("/azure-dicom/resume")
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(len(self.snapshots()), snapshot_count, "POST /resume took a snapshot")
        self.restart()
        self.assertIs(self.settings()["Paused"], False,
                      "POST /resume was not kept across the restart")

    def test_snapshot_before_each_change(self):
        self.start_source()
        changes = [({"Partition": "b"}, "Partition", FILE_PARTITION),
                   ({"Workers": 3}, "Workers", FILE_WORKERS),
                   ({"ApiVersion": "v1"}, "ApiVersion", "v2"),
                   ({"MaxRequestSizeMB": 8}, "MaxRequestSizeMB", 16)]
        snapshots_taken = []
        for body, key, previous in changes:
            answer = self.put_settings(body)
            self.assertEqual(answer["Changed"], [key])
            snapshot = answer["Snapshot"]
            self.assertIsNotNone(snapshot, f"no snapshot before {body}")
            self.assertEqual(snapshot["Reason"], "SettingsChange")
            self.assertEqual(snapshot["Settings"][key], previous,
                             f"the snapshot before {body} must record the value it replaced")
            snapshots_taken.append(snapshot)

        answer = self.put_settings({"Partition": "b"})
        self.assertEqual(answer["Changed"], [], "setting the current value changed something")
        self.assertIsNone(answer["Snapshot"], "a PUT that changes nothing took a snapshot")

        listed = self.snapshots()
        self.assertEqual([snapshot["ID"] for snapshot in listed],
                         [snapshot["ID"] for snapshot in snapshots_taken])
        self.assertEqual([int(snapshot["ID"]) for snapshot in listed],
                         sorted(int(snapshot["ID"]) for snapshot in listed),
                         "snapshots must be listed in ID order")
        for snapshot in listed:
            self.assertEqual(snapshot["Path"], f"/azure-dicom/snapshots/{snapshot['ID']}")
            self.assertEqual(self.source.get_json(snapshot["Path"]), snapshot)
            datetime.datetime.fromisoformat(snapshot["Time"].replace("Z", "+00:00"))
            self.assertIsInstance(snapshot["Position"]["LastCreated"], int)
            self.assertIsInstance(snapshot["Position"]["LastQueued"], int)
            self.assertIn("Pending", snapshot["Counts"])
            self.assertNotIn(SECRET, str(snapshot["Settings"]), "a snapshot shows the secret")

    def test_snapshot_api(self):
        self.start_source()
        response = self.source.post_json("/azure-dicom/snapshots", {})
        self.assertEqual(response.status_code, 200, response.text)
        manual = response.json()
        self.assertEqual(manual["Reason"], "Manual")
        self.assertEqual(manual["Settings"]["Partition"], FILE_PARTITION)
        self.assertIs(manual["Paused"], False)

        response = self.source.post_json("/azure-dicom/snapshots", {"Label": "before the move"})
        self.assertEqual(response.status_code, 200, response.text)
        labelled = response.json()
        self.assertEqual(labelled["Label"], "before the move")
        self.assertGreater(int(labelled["ID"]), int(manual["ID"]))
        self.assertEqual(self.source.get_json(labelled["Path"])["Label"], "before the move")

        response = self.source.post_json("/azure-dicom/snapshots", {"Label": "x" * 200})
        self.assertEqual(response.status_code, 200, "a Label of 200 characters is allowed")
        for body, field in [({"Label": "x" * 201}, "Label"), ({"Label": 5}, "Label"),
                            ({"Unknown": "x"}, "Unknown")]:
            with self.subTest(body=body):
                response = self.source.post_json("/azure-dicom/snapshots", body)
                self.assertEqual(response.status_code, 400, response.text)
                self.assertIn(field, response.text)
        response = self.source.post("/azure-dicom/snapshots", data="not JSON")
        self.assertEqual(response.status_code, 400, response.text)

        self.assertEqual(len(self.snapshots()), 3, "a rejected POST took a snapshot")
        self.assertEqual(self.source.get("/azure-dicom/snapshots/999999").status_code, 404)


if __name__ == "__main__":
    harness.main()
