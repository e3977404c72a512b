"""Security checks of the mirror plugin: authentication, methods, secrets, file modes and TLS.

Every Orthanc here keeps RemoteAccessAllowed false. The cases that start a plugin configured
with a host name outside loopback (the reserved .invalid domain) run only in a network
namespace whose only interface is lo, so that even a name lookup cannot leave the machine.
"""

import json
import os
import secrets
import stat
import sys
import unittest
import urllib.parse

import pydicom.uid
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

MIRROR_TIMEOUT_SECONDS = 120
ROLLBACK_TIMEOUT_SECONDS = 60
EXIT_TIMEOUT_SECONDS = 30
VAULT_SECRET_NAME = "orthanc-dicom-client-secret"
USER_NAME = "admin"
DATABASE_NAME = "azure-dicom-outbox.db"
DATABASE_SUFFIXES = ("", "-wal", "-shm")
PRIVATE_FILE_MODE = 0o600
REMOTE_SERVICE_URL = "https://dicom.example.invalid"
REMOTE_AUTHORITY_HOST = "https://login.example.invalid"
VERIFY_PEER_KEY = "AzureDicom.Tls.VerifyPeer"
# The start of the warning that the plugin logs for Tls.AllowUnverifiedRemoteHosts.
UNVERIFIED_WARNING = "AzureDicom.Tls.VerifyPeer is false and Tls.AllowUnverifiedRemoteHosts"
ISOLATION_REASON = ("starts a plugin configured with a host outside loopback, so it runs only "
                    "in a network namespace with loopback alone (unshare --net)")

# Routes that change state and take POST only. A GET on each must return 405 and change
# nothing.
STATE_CHANGING_ROUTES = ("sync", "retry", "pause", "resume", "credentials/refresh", "check",
                         "snapshots/{snapshot}/rollback")


def make_secret(prefix):
    """Return a distinctive secret with characters that URL encoding changes ('~', '+')."""
    return f"{prefix}{secrets.token_hex(12)}~{secrets.token_hex(4)}+x"


def encoded_forms(value):
    """Return the forms in which a value could leak: as is, and percent-encoded."""
    return {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}


class AuthenticatedOrthanc(harness.OrthancProcess):
    """An Orthanc with HTTP Basic authentication whose session sends the user's password."""

    def __init__(self, directory, name, password, **arguments):
        super().__init__(directory, name, **arguments)
        self.password = password
        self.extra["AuthenticationEnabled"] = True
        self.extra["RegisteredUsers"] = {USER_NAME: password}
        self.session.auth = (USER_NAME, password)

    def _release(self):
        code = super()._release()
        self.session.auth = (USER_NAME, self.password)
        return code

    def anonymous(self, method, path, auth=None, **arguments):
        """Send a request without the session's credentials (or with other ones)."""
        arguments.setdefault("timeout", harness.REQUEST_TIMEOUT_SECONDS)
        return requests.request(method, self.url + path, auth=auth, allow_redirects=False,
                                **arguments)


class SecurityTestCase(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.secret = make_secret("Sec")
        self.fake = fake_azure.FakeAzure(client_secret=self.secret).start()
        self.addCleanup(self.fake.stop)

    def entra(self, **settings):
        credentials = {"Type": "ClientSecret", "TenantId": self.fake.tenant,
                       "ClientId": self.fake.client_id, "AuthorityHost": self.fake.url}
        credentials.update(settings)
        return credentials

    def section(self, **settings):
        settings.setdefault("Credentials", self.entra(ClientSecret=self.secret))
        return harness.azure_section(self.fake.url, "v2", **settings)

    def start_authenticated(self, name="source"):
        self.password = make_secret("Pw")
        source = AuthenticatedOrthanc(self.path(name), name, self.password,
                                      plugins=[harness.plugin_path()], azure=self.section())
        return self.add_orthanc(source).start()

    def mirror(self, source, instances):
        """Upload instances and wait until the outbox is idle with all of them queued."""
        total = len(harness.list_outbox(source)) + len(instances)
        ids = harness.upload_all(source, instances)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=total)
        return ids

    def take_snapshot(self, source, label):
        response = source.post_json("/azure-dicom/snapshots", {"Label": label})
        self.assertEqual(response.status_code, 200, response.text)
        return str(response.json()["ID"])

    def wait_rollback_end(self, source):
        def ended():
            rollback = source.status()["Rollback"]
            return rollback if rollback and rollback["State"] != "Running" else None

        return harness.wait_for(ended, ROLLBACK_TIMEOUT_SECONDS, "the rollback to end",
                                describe_state=source.status)

    def observable_state(self, source):
        """Return what a request that changes state would change, for before/after checks."""
        status = source.status()
        settings = source.get_json("/azure-dicom/settings")
        return {
            "State": status["State"],
            "Paused": status["Paused"],
            "Counts": status["Counts"],
            "Rollback": status["Rollback"],
            "Settings": settings["Settings"],
            "Overridden": settings["Overridden"],
            "Snapshots": source.get_json("/azure-dicom/snapshots")["Snapshots"],
            "Jobs": source.get_json("/jobs"),
            "FakeRequests": len(self.fake.state()["Requests"]),
        }


class AuthenticationTest(SecurityTestCase):
    def prepare(self, source):
        """Mirror one study and take a snapshot; return the ids that the routes take."""
        instances = harness.make_study(1, 2)
        ids = self.mirror(source, instances)
        return {
            "instance": ids[0],
            "sop": harness.sop_uid_of(instances[0]),
            "study": source.get_json(f"/instances/{ids[0]}/study")["ID"],
            "snapshot": self.take_snapshot(source, "before the route checks"),
        }

    def routes(self, ids):
        """Return (method, path, body, accepted statuses) of every route of the plugin."""
        snapshot = ids["snapshot"]
        return [
            ("GET", "/azure-dicom/status", None, {200}),
            ("GET", "/azure-dicom/status/history", None, {200}),
            ("GET", "/azure-dicom/instances", None, {200}),
            ("GET", f"/azure-dicom/instances/{ids['instance']}", None, {200}),
            ("GET", f"/azure-dicom/instances/{ids['sop']}", None, {200}),
            ("GET", f"/azure-dicom/studies/{ids['study']}", None, {200}),
            ("GET", f"/azure-dicom/resources/{ids['study']}", None, {200}),
            ("POST", "/azure-dicom/sync", {"Resources": [ids["study"]]}, {200}),
            ("POST", "/azure-dicom/sync", {"Resources": [], "All": True}, {400}),
            ("POST", "/azure-dicom/retry", {"State": "Failed"}, {200}),
            ("POST", "/azure-dicom/pause", None, {200}),
            ("POST", "/azure-dicom/resume", None, {200}),
            ("GET", "/azure-dicom/credentials", None, {200}),
            ("POST", "/azure-dicom/credentials/refresh", None, {200}),
            ("POST", "/azure-dicom/check", None, {200}),
            ("GET", "/azure-dicom/settings", None, {200}),
            ("PUT", "/azure-dicom/settings", {"Workers": 3}, {200}),
            ("PUT", "/azure-dicom/settings", {"Workers": 0}, {400}),
            ("GET", "/azure-dicom/snapshots", None, {200}),
            ("POST", "/azure-dicom/snapshots", {"Label": "route check"}, {200}),
            ("GET", f"/azure-dicom/snapshots/{snapshot}", None, {200}),
            ("GET", "/azure-dicom/snapshots/999999", None, {404}),
            ("POST", f"/azure-dicom/snapshots/{snapshot}/rollback", {"DryRun": True}, {200}),
            ("POST", f"/azure-dicom/snapshots/{snapshot}/rollback",
             {"DryRun": False, "Confirm": "not the id"}, {400}),
            ("GET", "/azure-dicom/ui", None, {200, 301, 302, 307, 308}),
            ("GET", "/azure-dicom/ui/", None, {200}),
            ("GET", "/azure-dicom/ui/index.html", None, {200}),
            ("GET", "/azure-dicom/ui/app.js", None, {200}),
        ]

    def send(self, source, method, path, body, auth):
        data = None if body is None else json.dumps(body)
        return source.anonymous(method, path, auth=auth, data=data,
                                headers={"Content-Type": "application/json"})

    def test_every_route_requires_credentials(self):
        source = self.start_authenticated()
        ids = self.prepare(source)
        before = self.observable_state(source)
        routes = self.routes(ids)

        wrong_password = (USER_NAME, "not-" + self.password)
        for auth, description in ((None, "no credentials"), (wrong_password, "a wrong password")):
            for method, path, body, _ in routes:
                with self.subTest(method=method, path=path, auth=description):
                    response = self.send(source, method, path, body, auth)
                    self.assertEqual(response.status_code, 401, response.text[:300])
                    self.assertNotIn("azure", response.text.lower())

        self.assertEqual(self.observable_state(source), before,
                         "a request without valid credentials changed the plugin's state")

        for method, path, body, accepted in routes:
            with self.subTest(method=method, path=path, auth="the user's password"):
                response = self.send(source, method, path, body, (USER_NAME, self.password))
                self.assertIn(response.status_code, accepted, response.text[:300])


class MethodTest(SecurityTestCase):
    def test_state_routes_reject_get(self):
        source = self.start_authenticated()
        # A validation failure leaves a Failed item, which a retry would queue again.
        failing = harness.make_study(1, 2, patient_id="INVALID")
        self.mirror(source, failing + harness.make_study(1, 2))
        self.assertEqual(source.counts()["Failed"], 2, source.status())
        snapshot = self.take_snapshot(source, "before the method checks")
        paths = [f"/azure-dicom/{route.format(snapshot=snapshot)}"
                 for route in STATE_CHANGING_ROUTES]

        before = self.observable_state(source)
        for path in paths:
            for method in ("GET", "DELETE"):
                with self.subTest(method=method, path=path):
                    response = source.request(method, path)
                    self.assertEqual(response.status_code, 405, response.text[:300])
                    self.assertEqual(response.text, "")
                    self.assertIn("POST", response.headers.get("Allow", ""))
        self.assertEqual(self.observable_state(source), before,
                         "a GET or DELETE on a route that changes state changed it")

        # Reads take GET only, and the settings take GET and PUT.
        for method, path in (("POST", "/azure-dicom/status"), ("PUT", "/azure-dicom/status"),
                             ("POST", "/azure-dicom/settings"),
                             ("DELETE", "/azure-dicom/settings"),
                             ("PUT", f"/azure-dicom/snapshots/{snapshot}")):
            with self.subTest(method=method, path=path):
                self.assertEqual(source.request(method, path).status_code, 405)
        self.assertEqual(self.observable_state(source), before)

        # While paused, a GET on resume must not resume.
        self.assertEqual(source.post("/azure-dicom/pause").status_code, 200)
        paused = self.observable_state(source)
        self.assertTrue(paused["Paused"])
        self.assertEqual(source.get("/azure-dicom/resume").status_code, 405)
        self.assertEqual(self.observable_state(source), paused)


class SecretsTest(SecurityTestCase):
    """Search every output of the plugin for secrets, tokens and patient names."""

    def setUp(self):
        super().setUp()
        self.known_secrets = [self.secret]
        family = "Zq" + secrets.token_hex(6)
        self.patient_names = [family, f"{family}^Leakcheck"]
        self.snapshot_texts = []
        self.sources = []

    def start_recorded(self, name, credentials, options, environment=None):
        section = self.section(Credentials=credentials)
        source = harness.source_orthanc(self.path(name), section, name=name,
                                        environment=environment)
        source.options = list(options)
        source.record_responses()
        self.sources.append(source)
        return self.add_orthanc(source).start()

    def make_patient_study(self, count=3):
        study_uid = pydicom.uid.generate_uid()
        series_uid = pydicom.uid.generate_uid()
        return [harness.make_instance(study_uid, series_uid, "LEAKCHECK", 2048,
                                      instance_number=number + 1,
                                      patient_name=self.patient_names[1])
                for number in range(count)]

    def exercise_routes(self, source, break_token, fix_token):
        """Call every route, with a failed token request, a refresh, a check and a rollback."""
        ids = self.mirror(source, self.make_patient_study())
        study = source.get_json(f"/instances/{ids[0]}/study")["ID"]
        sop = source.get_json(f"/instances/{ids[0]}/simplified-tags")["SOPInstanceUID"]

        break_token()
        self.fake.revoke_tokens()
        failed = source.post("/azure-dicom/credentials/refresh")
        self.assertEqual(failed.status_code, 502, failed.text)
        check = source.post("/azure-dicom/check")
        self.assertEqual(check.status_code, 200, check.text)
        self.assertFalse(check.json()["Passed"], check.text)
        fix_token()
        refreshed = source.post("/azure-dicom/credentials/refresh")
        self.assertEqual(refreshed.status_code, 200, refreshed.text)
        check = source.post("/azure-dicom/check")
        self.assertTrue(check.json()["Passed"], check.text)
        rejected = [request for request in self.fake.state()["Requests"]
                    if request["Kind"] == "token" and request["Status"] == 401]
        self.assertTrue(rejected, "no token request failed, so its error path never ran")

        # Error pages that quote the request's headers: the 401 makes the plugin take a new
        # token and send again, and the 400 fails the batch with the page in its message.
        self.fake.fail_next(401, echo_headers=True)
        self.fake.fail_next(400, echo_headers=True)
        self.mirror(source, self.make_patient_study())
        failed = harness.list_outbox(source, state="Failed")
        self.assertTrue(failed, "the 400 with the quoted headers failed no instance")
        self.assertIn("[REDACTED]", failed[0]["Message"], failed[0])
        retried = source.post_json("/azure-dicom/retry", {"State": "Failed"})
        self.assertEqual(retried.status_code, 200, retried.text)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS)
        echoes = [request for request in self.fake.stow_requests()
                  if request["Status"] in (400, 401)]
        self.assertEqual(len(echoes), 2, echoes)

        snapshot = self.take_snapshot(source, "before the second study")
        changed = source.put_json("/azure-dicom/settings", {"Workers": 3})
        self.assertEqual(changed.status_code, 200, changed.text)
        self.mirror(source, self.make_patient_study())
        for path in ("/azure-dicom/snapshots", f"/azure-dicom/snapshots/{snapshot}"):
            response = source.get(path)
            self.assertEqual(response.status_code, 200, response.text)
            self.snapshot_texts.append(response.text)

        rollback = f"/azure-dicom/snapshots/{snapshot}/rollback"
        plan = source.post_json(rollback, {"DryRun": True})
        self.assertEqual(plan.status_code, 200, plan.text)
        started = source.post_json(rollback, {"DryRun": False, "Confirm": snapshot})
        self.assertEqual(started.status_code, 200, started.text)
        self.wait_rollback_end(source)

        retried = source.post_json("/azure-dicom/retry", {"State": "RolledBack"})
        self.assertEqual(retried.status_code, 200, retried.text)
        synced = source.post_json("/azure-dicom/sync", {"Resources": [study]})
        self.assertEqual(synced.status_code, 200, synced.text)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS)
        for path in ("/azure-dicom/status", "/azure-dicom/status/history",
                     "/azure-dicom/instances", f"/azure-dicom/instances/{ids[0]}",
                     f"/azure-dicom/instances/{sop}", f"/azure-dicom/studies/{study}",
                     f"/azure-dicom/resources/{study}", "/azure-dicom/credentials",
                     "/azure-dicom/settings", "/azure-dicom/snapshots",
                     "/azure-dicom/ui/", "/azure-dicom/ui/app.js"):
            self.assertEqual(source.get(path).status_code, 200, path)
        for path in ("/azure-dicom/pause", "/azure-dicom/resume"):
            self.assertEqual(source.post(path).status_code, 200, path)

    def secret_values(self):
        return sorted(set(self.known_secrets + self.fake.secret_values()))

    def assert_nothing_leaked(self, source):
        secret_values = self.secret_values()
        self.assertTrue(self.fake.issued_values, "the fake issued no token")
        self.check_database_files(source, secret_values)
        source.stop()
        self.check_database_files(source, secret_values)

        log = source.read_log()
        for value in secret_values:
            for form in encoded_forms(value):
                self.assertNotIn(form, log, f"a secret is in {source.log_path}")
        for name in self.patient_names:
            self.assertNotIn(name, log, f"a patient name is in {source.log_path}")

        texts = [(f"{status} to {method} {path}", text)
                 for method, path, status, text in source.responses
                 if path.startswith("/azure-dicom")]
        texts += [("snapshot JSON", text) for text in self.snapshot_texts]
        for description, text in texts:
            for value in secret_values:
                self.assertNotIn(value, text, f"a secret is in the response {description}")
            for name in self.patient_names:
                self.assertNotIn(name, text, f"a patient name is in the response {description}")

    def check_database_files(self, source, secret_values):
        found = 0
        for suffix in DATABASE_SUFFIXES:
            path = os.path.join(source.storage_directory, DATABASE_NAME + suffix)
            if not os.path.exists(path):
                continue
            found += 1
            with open(path, "rb") as database:
                content = database.read()
            for value in secret_values + self.patient_names:
                self.assertNotIn(value.encode("utf-8"), content, f"a secret or name is in {path}")
        self.assertGreater(found, 0, "no outbox database file was found")

    def test_client_secret_verbose(self):
        source = self.start_recorded("verbose", self.entra(ClientSecret=self.secret),
                                     ("--verbose",))
        wrong = make_secret("Wrong")
        self.known_secrets.append(wrong)
        self.exercise_routes(source, lambda: self.fake.set_client_secret(wrong),
                             lambda: self.fake.set_client_secret(self.secret))
        self.assert_nothing_leaked(source)

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_key_vault_secret_trace(self):
        vault_secret = make_secret("Vault")
        rotated = make_secret("Rotated")
        self.known_secrets += [vault_secret, rotated]
        self.fake.set_client_secret(vault_secret)
        self.fake.set_vault_secret(VAULT_SECRET_NAME, vault_secret)
        key_vault = {"VaultUrl": self.fake.url, "SecretName": VAULT_SECRET_NAME,
                     "Credentials": {"Type": "ManagedIdentity"}}
        source = self.start_recorded(
            "trace", self.entra(KeyVault=key_vault), ("--trace",),
            environment={"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.fake.url})

        def rotate():
            self.fake.set_vault_secret(VAULT_SECRET_NAME, rotated)
            self.fake.set_client_secret(rotated)

        self.exercise_routes(source, lambda: self.fake.set_client_secret(make_secret("Other")),
                             rotate)
        pinned = source.get_json("/azure-dicom/credentials")["KeyVault"]["VersionInUse"]
        changed = source.put_json("/azure-dicom/settings",
                                  {"Credentials": {"KeyVault": {"SecretVersion": pinned}}})
        self.assertEqual(changed.status_code, 200, changed.text)
        self.assertEqual(source.post("/azure-dicom/credentials/refresh").status_code, 200)
        self.assert_nothing_leaked(source)


class DatabaseModeTest(SecurityTestCase):
    def assert_private(self, folder):
        for suffix in DATABASE_SUFFIXES:
            path = os.path.join(folder, DATABASE_NAME + suffix)
            with self.subTest(file=path):
                self.assertTrue(os.path.exists(path), f"{path} is missing")
                mode = stat.S_IMODE(os.stat(path).st_mode)
                self.assertEqual(mode, PRIVATE_FILE_MODE, f"{path} has mode {mode:o}")

    def launch_with_umask(self, source, umask):
        previous = os.umask(umask)
        try:
            source.start()
        finally:
            os.umask(previous)

    def test_outbox_files_private(self):
        # An umask of 0 gives every new file the mode that its creator requests.
        for umask in (0o022, 0o000):
            with self.subTest(umask=f"{umask:03o}"):
                name = f"umask-{umask:03o}"
                source = self.add_orthanc(harness.source_orthanc(self.path(name),
                                                                 self.section(), name=name))
                self.launch_with_umask(source, umask)
                self.mirror(source, harness.make_study(1, 2))
                self.assert_private(source.storage_directory)

                # A clean stop removes the -wal and -shm files, and the next start makes them
                # again.
                source.stop()
                self.launch_with_umask(source, umask)
                self.mirror(source, harness.make_study(1, 1))
                self.assert_private(source.storage_directory)
                source.stop()

    def test_database_setting_private(self):
        folder = self.path("outbox")
        os.makedirs(folder)
        section = self.section(Database=os.path.join(folder, DATABASE_NAME))
        source = self.add_orthanc(harness.source_orthanc(self.path("source"), section))
        self.launch_with_umask(source, 0o000)
        self.mirror(source, harness.make_study(1, 2))
        self.assert_private(folder)


class UnverifiedTlsTest(SecurityTestCase):
    def make_source(self, name, **tls):
        section = harness.azure_section(REMOTE_SERVICE_URL, "v2", Tls=tls)
        return self.add_orthanc(harness.source_orthanc(self.path(name), section, name=name))

    def assert_stops(self, source):
        source.launch()
        code = source.wait_exit(EXIT_TIMEOUT_SECONDS)
        running = code is None
        source.stop()
        self.assertFalse(running, f"Orthanc started:\n{source.tail_log()}")
        self.assertNotEqual(code, 0)
        self.assertIn(VERIFY_PEER_KEY, source.read_log(), source.tail_log())

    def test_remote_unverified_rejected(self):
        self.assert_stops(self.make_source("service", VerifyPeer=False))

        # The check covers Entra ID and Key Vault too, with the service on loopback.
        for name, credentials in (
                ("authority", self.entra(ClientSecret=self.secret,
                                         AuthorityHost=REMOTE_AUTHORITY_HOST)),
                ("vault", self.entra(KeyVault={"VaultUrl": "https://vault.example.invalid",
                                               "SecretName": VAULT_SECRET_NAME}))):
            with self.subTest(case=name):
                section = self.section(Credentials=credentials, Tls={"VerifyPeer": False})
                # A managed identity of the vault would go to the fake, never to the instance
                # metadata address, if the plugin started.
                source = self.add_orthanc(harness.source_orthanc(
                    self.path(name), section, name=name,
                    environment={"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.fake.url}))
                self.assert_stops(source)
        self.assertEqual(self.fake.state()["Requests"], [])

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_remote_unverified_allowed(self):
        source = self.make_source("allowed", VerifyPeer=False, AllowUnverifiedRemoteHosts=True)
        source.start()
        paused = source.put_json("/azure-dicom/settings", {"Paused": True})
        self.assertEqual(paused.status_code, 200, paused.text)

        self.assertIn(UNVERIFIED_WARNING, source.read_log())
        status = source.status()
        self.assertTrue(status["Paused"])
        self.assertEqual(sum(status["Counts"].values()), 0)

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_runtime_remote_url_checked(self):
        section = self.section(Tls={"VerifyPeer": False})
        source = self.add_orthanc(harness.source_orthanc(self.path("source"), section))
        source.start()
        rejected = source.put_json("/azure-dicom/settings",
                                   {"ServiceUrl": REMOTE_SERVICE_URL, "Paused": True})
        self.assertEqual(rejected.status_code, 400, rejected.text)
        self.assertIn(VERIFY_PEER_KEY, rejected.text)
        settings = source.get_json("/azure-dicom/settings")
        self.assertEqual(settings["Settings"]["ServiceUrl"], self.fake.url)
        self.assertFalse(settings["Paused"])

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_runtime_remote_url_warns(self):
        section = self.section(Tls={"VerifyPeer": False, "AllowUnverifiedRemoteHosts": True})
        source = self.add_orthanc(harness.source_orthanc(self.path("source"), section))
        source.start()
        self.assertNotIn(UNVERIFIED_WARNING, source.read_log())

        # Nothing is uploaded and the same change pauses sending, so nothing goes to the remote
        # host.
        changed = source.put_json("/azure-dicom/settings",
                                  {"ServiceUrl": REMOTE_SERVICE_URL, "Paused": True})
        self.assertEqual(changed.status_code, 200, changed.text)
        self.assertIn(UNVERIFIED_WARNING, source.read_log())
        self.assertTrue(source.status()["Paused"])


if __name__ == "__main__":
    harness.main()
