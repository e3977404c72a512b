"""Mirror over HTTPS with secrets from Key Vault and every managed identity shape.

The fake serves Entra ID, Key Vault and the DICOM service over HTTPS with a certificate of a
test CA that each test makes with the openssl command, and the plugin trusts that CA through
Tls.CaCertificates. The managed identity endpoints stay plain http on loopback, as on a real
host. The managed identity tests run only in a network namespace whose only interface is lo,
so that a plugin that ignored an endpoint override could reach nothing.

After every test, tearDown searches Orthanc's log, every REST response of the test and the
outbox database files for every secret the test used or the fake issued.
"""

import base64
import os
import secrets
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

import pydicom.uid
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

MIRROR_TIMEOUT_SECONDS = 120
WAITING_TIMEOUT_SECONDS = 60
VAULT_SECRET_NAME = "orthanc-dicom-client-secret"
VAULT_CERTIFICATE_NAME = "orthanc-dicom-certificate"
PKCS12_CONTENT_TYPE = "application/x-pkcs12"
USER_ASSIGNED_CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
ARC_TOKEN_FOLDER = "/var/opt/azcmagent/tokens"
DATABASE_FILES = ("azure-dicom-outbox.db", "azure-dicom-outbox.db-wal",
                  "azure-dicom-outbox.db-shm")
CERTIFICATE_DAYS = 2

# The plugin's minimum AzureDicom.Credentials.KeyVault.RefreshSeconds.
MIN_REFRESH_SECONDS = 10

# Instances stored one by one while the secret rotates, and the pause between two of them, so
# that uploads go on before, during and after the rotation.
ROTATION_INSTANCES = 40
ROTATION_UPLOAD_INTERVAL_SECONDS = 0.1
ROTATION_START_SECONDS = 1.0

# A token of the fake lives this long during the workload identity test, so that the plugin's
# token cache, which refreshes a short-lived token at half its lifetime, requests a new one
# between the two studies.
SHORT_TOKEN_LIFETIME_SECONDS = 4

ISOLATION_REASON = ("managed identity tests run only in a network namespace with loopback "
                    "alone (unshare --net), as the README's test command does")
ROOT_REASON = f"the Azure Arc test writes key files in {ARC_TOKEN_FOLDER}, which needs root"


def upload_in_loop(url, instances, interval, uploaded, errors):
    """POST each instance to Orthanc at url, waiting interval seconds between two of them."""
    with requests.Session() as session:
        for data in instances:
            try:
                response = session.post(url + "/instances", data=data,
                                        headers={"Content-Type": "application/dicom"},
                                        timeout=harness.REQUEST_TIMEOUT_SECONDS)
            except requests.RequestException as error:
                errors.append(repr(error))
                return
            if response.status_code != 200:
                errors.append(f"POST /instances returned {response.status_code}")
                return
            uploaded.append(harness.sop_uid_of(data))
            time.sleep(interval)


class VaultCredentialsTest(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.pki = fake_azure.make_test_pki(self.directory)
        self.secret = "secret-" + secrets.token_hex(16)
        self.fake = fake_azure.FakeAzure(
            client_secret=self.secret,
            tls_files=(self.pki["Certificate"], self.pki["Key"])).start()
        self.addCleanup(self.fake.stop)
        self.sources = []
        self.extra_secrets = []  # secrets that the fake does not store, such as a PFX password

    def tearDown(self):
        self.check_secrets_absent()
        super().tearDown()

    # Orthanc and its configuration.

    def start_source(self, credentials, environment=None, options=("--verbose",),
                     service_url=None, tls=None):
        if tls is None:
            tls = {"CaCertificates": self.pki["Ca"]}
        section = harness.azure_section(service_url or self.fake.url, "v2",
                                        Credentials=credentials, Tls=tls)
        name = f"source{len(self.sources) + 1}"
        source = harness.source_orthanc(self.path(name), section, name=name,
                                        environment=environment)
        source.options = list(options)
        source.record_responses()
        self.sources.append(source)
        return self.add_orthanc(source).start()

    def entra(self, credential_type, **settings):
        credentials = {"Type": credential_type, "TenantId": self.fake.tenant,
                       "ClientId": self.fake.client_id, "AuthorityHost": self.fake.url}
        credentials.update(settings)
        return credentials

    def key_vault(self, name=VAULT_SECRET_NAME, **settings):
        vault = {"VaultUrl": self.fake.url, "SecretName": name,
                 "Credentials": {"Type": "ManagedIdentity"}}
        vault.update(settings)
        return vault

    def vm_environment(self):
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.fake.identity_url}

    def app_service_environment(self):
        header = "header-" + secrets.token_hex(8)
        self.fake.set_identity_header(header)
        return {"IDENTITY_ENDPOINT": self.fake.identity_url + "/msi/token",
                "IDENTITY_HEADER": header}

    # Checks.

    def mirror_one_study(self, source, per_series=3):
        instances = harness.make_study(1, per_series)
        harness.upload_all(source, instances)
        return self.wait_all_mirrored(source, {harness.sop_uid_of(data) for data in instances})

    def wait_all_mirrored(self, source, uids):
        total = len(harness.list_instances(source))
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=total)
        self.assertEqual(status["Counts"]["Failed"], 0, status)
        self.assertEqual(status["Counts"]["Mirrored"], total, status)
        self.assertEqual(self.fake.stored_uids() & uids, uids)
        return status

    def fake_requests(self, kind, status=None):
        return [request for request in self.fake.state()["Requests"]
                if request["Kind"] == kind and (status is None or request["Status"] == status)]

    def vault_status(self, source):
        return source.get_json("/azure-dicom/credentials")["KeyVault"]

    def run_check(self, source):
        response = source.post("/azure-dicom/check")
        self.assertEqual(response.status_code, 200, response.text)
        result = response.json()
        return result, {step["Name"]: step for step in result["Steps"]}

    def wait_waiting_on_key_vault(self, source):
        def waiting():
            status = source.status()
            message = str(status["PauseReason"]) + str(status["LastError"])
            return status if status["State"] == "Waiting" and "Key Vault" in message else None

        return harness.wait_for(waiting, WAITING_TIMEOUT_SECONDS,
                                "status Waiting with a message naming Key Vault",
                                describe_state=source.status)

    def check_secrets_absent(self):
        """Fail if a secret is in a log, a REST response or a database file of a plugin Orthanc."""
        for source in self.sources:
            if source.is_running():
                for path in ("/azure-dicom/status", "/azure-dicom/credentials",
                             "/azure-dicom/settings", "/azure-dicom/instances"):
                    source.get(path)
            values = self.fake.secret_values() + self.extra_secrets
            self.check_source_files(source, values)
            source.stop()
            self.check_source_files(source, values)
            for method, path, status, text in source.responses:
                for value in values:
                    self.assertNotIn(value, text, f"a secret is in the response {status} to "
                                                  f"{method} {path} of {source.name}")

    def check_source_files(self, source, values):
        log = source.read_log()
        for value in values:
            for form in {value, urllib.parse.quote(value, safe="")}:
                self.assertNotIn(form, log, f"a secret is in {source.log_path}")
        for name in DATABASE_FILES:
            path = os.path.join(source.storage_directory, name)
            if not os.path.exists(path):
                continue
            with open(path, "rb") as database:
                content = database.read()
            for value in values:
                self.assertNotIn(value.encode("utf-8"), content, f"a secret is in {path}")

    # Certificates.

    def make_certificate(self, name="client"):
        """Make a self-signed RSA certificate; return (certificate PEM, key PEM) paths."""
        key = self.path(f"{name}-key.pem")
        certificate = self.path(f"{name}-certificate.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", certificate, "-days", str(CERTIFICATE_DAYS), "-subj",
                        "/CN=orthanc-azure-dicom-test"], check=True, capture_output=True)
        return certificate, key

    def make_pkcs12(self, certificate, key, password, name="client"):
        """Return the path of a PKCS#12 file of the certificate and key, made with openssl."""
        path = self.path(f"{name}.pfx")
        subprocess.run(["openssl", "pkcs12", "-export", "-in", certificate, "-inkey", key,
                        "-out", path, "-passout", "pass:" + password],
                       check=True, capture_output=True)
        return path

    # Tests.

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_https_key_vault_secret(self):
        version = self.fake.set_vault_secret(VAULT_SECRET_NAME, self.secret)
        credentials = self.entra("ClientSecret", KeyVault=self.key_vault())
        source = self.start_source(credentials, self.vm_environment(), options=("--trace",))
        self.mirror_one_study(source)

        vault = self.vault_status(source)
        self.assertEqual(vault["VersionInUse"], version)
        self.assertEqual(vault["LastError"], "")
        self.assertEqual(vault["Credentials"]["Type"], "ManagedIdentity")
        vault_reads = self.fake_requests("vault", 200)
        self.assertTrue(vault_reads)
        self.assertIn("api-version=7.4", vault_reads[0]["Path"])
        self.assertEqual(vault_reads[0]["Principal"], fake_azure.SYSTEM_ASSIGNED)
        self.assertTrue(self.fake_requests("stow", 200))

    def test_untrusted_certificate(self):
        source = self.start_source(self.entra("ClientSecret", ClientSecret=self.secret),
                                   tls={})
        harness.upload_all(source, harness.make_study(1, 2))

        def waiting_on_tls():
            status = source.status()
            message = (str(status["PauseReason"]) + str(status["LastError"]) +
                       str(status["Credentials"]["LastError"])).lower()
            tls_words = ("certificate", "ssl", "tls")
            if status["State"] == "Waiting" and any(word in message for word in tls_words):
                return status
            return None

        status = harness.wait_for(waiting_on_tls, WAITING_TIMEOUT_SECONDS,
                                  "status Waiting with a TLS message",
                                  describe_state=source.status)
        self.assertEqual(status["Counts"]["Failed"], 0)
        self.assertEqual(status["Counts"]["Mirrored"], 0)
        self.assertEqual(self.fake_requests("token"), [])
        self.assertEqual(self.fake.stored_uids(), set())

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    @unittest.skipUnless(os.geteuid() == 0, ROOT_REASON)
    def test_managed_identity_arc(self):
        self.make_arc_folder()
        self.fake.enable_arc(ARC_TOKEN_FOLDER)
        environment = {"IDENTITY_ENDPOINT": self.fake.identity_url + "/metadata/identity/oauth2/"
                                                                     "token",
                       "IMDS_ENDPOINT": self.fake.identity_url}
        source = self.start_source({"Type": "ManagedIdentity"}, environment)
        status = self.mirror_one_study(source)

        self.assertEqual(status["Credentials"]["Type"], "ManagedIdentity")
        self.assertEqual(source.get_json("/azure-dicom/credentials")["Source"], "AzureArc")
        challenges = [request for request in self.fake_requests("token", 401)
                      if "ArcChallenge" in request]
        self.assertTrue(challenges)
        self.assertTrue(self.fake_requests("token", 200))
        for request in challenges:
            self.assertFalse(os.path.exists(request["ArcChallenge"]), request)

    def make_arc_folder(self):
        """Create the Arc agent's token folder if missing, and remove what was created after."""
        missing = []
        folder = ARC_TOKEN_FOLDER
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(ARC_TOKEN_FOLDER, mode=0o700, exist_ok=True)
        # Cleanups run last in, first out: the key files go first, then the deepest folder.
        for created in reversed(missing):
            self.addCleanup(os.rmdir, created)
        self.addCleanup(self.fake.remove_arc_key_files)

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_managed_identity_user_assigned(self):
        self.fake.set_managed_identities([USER_ASSIGNED_CLIENT_ID], system_assigned=False)
        source = self.start_source({"Type": "ManagedIdentity",
                                    "ClientId": USER_ASSIGNED_CLIENT_ID}, self.vm_environment())
        self.mirror_one_study(source)

        summary = source.get_json("/azure-dicom/credentials")
        self.assertEqual(summary["Principal"], USER_ASSIGNED_CLIENT_ID)
        self.assertEqual(summary["Source"], "VirtualMachine")
        issued = self.fake_requests("token", 200)
        self.assertTrue(issued)
        self.assertEqual({request["ClientId"] for request in issued}, {USER_ASSIGNED_CLIENT_ID})

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_rotation_while_sending(self):
        self.fake.set_vault_secret(VAULT_SECRET_NAME, self.secret)
        credentials = self.entra("ClientSecret", KeyVault=self.key_vault())
        source = self.start_source(credentials, self.app_service_environment())
        first = self.mirror_one_study(source, per_series=2)
        self.assertEqual(first["Counts"]["Failed"], 0)

        study_uid = pydicom.uid.generate_uid()
        series_uid = pydicom.uid.generate_uid()
        instances = [harness.make_instance(study_uid, series_uid, "ROTATION", 2048,
                                           instance_number=number + 1)
                     for number in range(ROTATION_INSTANCES)]
        uploaded = []
        errors = []
        uploader = threading.Thread(target=upload_in_loop, name="rotation-uploader",
                                    args=(source.url, instances,
                                          ROTATION_UPLOAD_INTERVAL_SECONDS, uploaded, errors))
        uploader.start()
        time.sleep(ROTATION_START_SECONDS)

        # Rotation: the vault gets a new version, the application accepts only the new
        # secret, and the tokens issued with the old one stop working.
        rotated = "secret-" + secrets.token_hex(16)
        new_version = self.fake.set_vault_secret(VAULT_SECRET_NAME, rotated)
        self.fake.set_client_secret(rotated)
        self.fake.revoke_tokens()
        uploader.join()

        self.assertEqual(errors, [])
        self.assertEqual(len(uploaded), ROTATION_INSTANCES)
        self.wait_all_mirrored(source, set(uploaded))
        self.assertEqual(harness.list_outbox(source, state="Failed"), [])
        for item in harness.list_outbox(source):
            self.assertNotIn("AADSTS7000215", str(item.get("Message", "")), item)
        self.assertEqual(self.vault_status(source)["VersionInUse"], new_version)
        rejected = [request for request in self.fake_requests("token") if request["Status"] == 401]
        self.assertTrue(rejected, "Entra never rejected the old secret: the test rotated nothing")

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_pinned_version_stays(self):
        pinned = self.fake.set_vault_secret(VAULT_SECRET_NAME, self.secret)
        vault = self.key_vault(SecretVersion=pinned, RefreshSeconds=MIN_REFRESH_SECONDS)
        source = self.start_source(self.entra("ClientSecret", KeyVault=vault),
                                   self.vm_environment())
        self.mirror_one_study(source)

        # The newer version is a value that Entra does not accept, so a plugin that followed it
        # would fail to get a token.
        newer = self.fake.set_vault_secret(VAULT_SECRET_NAME, "newer-" + secrets.token_hex(16))
        time.sleep(MIN_REFRESH_SECONDS + 1)
        self.fake.revoke_tokens()
        self.mirror_one_study(source)

        status = self.vault_status(source)
        self.assertEqual(status["PinnedVersion"], pinned)
        self.assertEqual(status["VersionInUse"], pinned)
        reads = self.fake_requests("vault")
        self.assertGreaterEqual(len(reads), 2, "the pinned version was not read again")
        for request in reads:
            self.assertIn(f"/{pinned}", request["Path"])
            self.assertNotIn(newer, request["Path"])

    def check_vault_failure_then_fix(self, source, fix, hint_word):
        """Check the Waiting state, the routes and the preflight check, then fix() and mirror."""
        instances = harness.make_study(1, 3)
        harness.upload_all(source, instances)
        status = self.wait_waiting_on_key_vault(source)
        self.assertEqual(status["Counts"]["Failed"], 0)
        self.assertTrue(self.vault_status(source)["LastError"])

        result, steps = self.run_check(source)
        self.assertFalse(result["Passed"])
        self.assertEqual(steps["KeyVault"]["Status"], "Failed", result)
        self.assertIn(hint_word, steps["KeyVault"]["Hint"])
        self.assertEqual(source.counts()["Failed"], 0)

        failed = source.post("/azure-dicom/credentials/refresh")
        self.assertEqual(failed.status_code, 502, failed.text)
        self.assertFalse(failed.json()["Refreshed"])
        self.assertIn("Key Vault", failed.json()["Error"])

        fix()
        response = source.post("/azure-dicom/credentials/refresh")
        self.assertEqual(response.status_code, 200, response.text)
        self.wait_all_mirrored(source, {harness.sop_uid_of(data) for data in instances})
        self.assertEqual(self.vault_status(source)["LastError"], "")
        self.assertEqual(harness.list_outbox(source, state="Failed"), [])

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_vault_forbidden(self):
        self.fake.set_vault_secret(VAULT_SECRET_NAME, self.secret)
        self.fake.set_vault_forbidden([fake_azure.SYSTEM_ASSIGNED])
        source = self.start_source(self.entra("ClientSecret", KeyVault=self.key_vault()),
                                   self.app_service_environment())
        self.check_vault_failure_then_fix(source, lambda: self.fake.set_vault_forbidden([]),
                                          "Key Vault Secrets User")
        self.assertIn("ForbiddenByRbac", str([request.get("VaultError")
                                              for request in self.fake_requests("vault", 403)]))

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_vault_secret_disabled(self):
        self.fake.set_vault_secret(VAULT_SECRET_NAME, self.secret)
        self.fake.set_vault_secret_enabled(VAULT_SECRET_NAME, False)
        source = self.start_source(self.entra("ClientSecret", KeyVault=self.key_vault()),
                                   self.vm_environment())
        self.check_vault_failure_then_fix(
            source, lambda: self.fake.set_vault_secret_enabled(VAULT_SECRET_NAME, True),
            "disabled")

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_certificate_from_vault_pkcs12(self):
        certificate, key = self.make_certificate()
        with open(self.make_pkcs12(certificate, key, ""), "rb") as pfx:
            encoded = base64.b64encode(pfx.read()).decode("ascii")
        version = self.fake.set_vault_secret(VAULT_CERTIFICATE_NAME, encoded,
                                             content_type=PKCS12_CONTENT_TYPE)
        self.fake.set_assertion_certificate(certificate)
        credentials = self.entra("ClientCertificate",
                                 KeyVault=self.key_vault(VAULT_CERTIFICATE_NAME))
        source = self.start_source(credentials, self.vm_environment())
        status = self.mirror_one_study(source)

        self.assertEqual(status["Credentials"]["Type"], "ClientCertificate")
        self.assertEqual(self.vault_status(source)["VersionInUse"], version)
        assertions = [request for request in self.fake_requests("token", 200)
                      if "oauth2/v2.0/token" in request["Path"]]
        self.assertTrue(assertions)

    def test_certificate_pkcs12_file_password(self):
        certificate, key = self.make_certificate()
        password = "pfx-" + secrets.token_hex(12)
        self.extra_secrets.append(password)
        pfx = self.make_pkcs12(certificate, key, password)
        self.fake.set_assertion_certificate(certificate)
        credentials = self.entra("ClientCertificate", CertificatePath=pfx,
                                 CertificatePassword=password)
        source = self.start_source(credentials)
        status = self.mirror_one_study(source)

        self.assertEqual(status["Credentials"]["Type"], "ClientCertificate")
        self.assertTrue(self.fake_requests("token", 200))

    def test_workload_identity_token_rewritten(self):
        token_file = self.path("federated-token")
        first = "eyJ" + secrets.token_urlsafe(48)
        with open(token_file, "w", encoding="ascii") as output:
            output.write(first)
        self.fake.set_federated_token(first)
        self.fake.set_token_lifetime(SHORT_TOKEN_LIFETIME_SECONDS)
        environment = {"AZURE_FEDERATED_TOKEN_FILE": token_file}
        source = self.start_source(self.entra("WorkloadIdentity"), environment)
        self.mirror_one_study(source)
        issued = self.fake.state()["TokensIssued"]

        # Kubernetes replaces the projected token file: the fake now accepts only the new one.
        second = "eyJ" + secrets.token_urlsafe(48)
        with open(token_file, "w", encoding="ascii") as output:
            output.write(second)
        self.fake.set_federated_token(second)
        time.sleep(SHORT_TOKEN_LIFETIME_SECONDS)
        self.mirror_one_study(source)

        self.assertGreater(self.fake.state()["TokensIssued"], issued)
        self.extra_secrets += [first, second]

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_check_passes_over_https(self):
        self.fake.set_vault_secret(VAULT_SECRET_NAME, self.secret)
        credentials = self.entra("ClientSecret", KeyVault=self.key_vault())
        source = self.start_source(credentials, self.vm_environment())
        result, steps = self.run_check(source)

        self.assertTrue(result["Passed"], result)
        for step in result["Steps"]:
            self.assertIn(step["Status"], ("Passed", "Info", "Skipped"), step)
        self.assertEqual(steps["KeyVault"]["Status"], "Passed", result)
        self.assertEqual(steps["Token"]["Status"], "Passed", result)
        self.assertEqual(steps["DicomService"]["Status"], "Passed", result)

    def test_check_wrong_service_path(self):
        credentials = self.entra("ClientSecret", ClientSecret=self.secret)
        source = self.start_source(credentials, service_url=self.fake.url + "/not-a-service")
        result, steps = self.run_check(source)

        self.assertFalse(result["Passed"])
        self.assertEqual(steps["Token"]["Status"], "Passed", result)
        self.assertEqual(steps["DicomService"]["Status"], "Failed", result)
        self.assertIn("404", steps["DicomService"]["Details"])
        self.assertIn("ServiceUrl", steps["DicomService"]["Hint"])

    def test_post_routes_reject_get(self):
        source = self.start_source(self.entra("ClientSecret", ClientSecret=self.secret))
        for path in ("/azure-dicom/credentials/refresh", "/azure-dicom/check"):
            response = source.get(path)
            self.assertEqual(response.status_code, 405, path)
        self.assertEqual(self.fake_requests("token"), [])


if __name__ == "__main__":
    harness.main()
