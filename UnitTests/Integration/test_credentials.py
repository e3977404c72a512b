"""Mirror to the fake Azure service with each credential type that reaches Entra ID or a host.

Managed identity normally calls the instance metadata address of an Azure VM. Here every
endpoint is overridden to point at the fake on loopback (AZURE_POD_IDENTITY_AUTHORITY_HOST,
IDENTITY_ENDPOINT), and those tests run only in a network namespace whose only interface is lo,
so that a plugin that ignored an override could reach nothing.
"""

import os
import secrets
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

MIRROR_TIMEOUT_SECONDS = 120
STATE_TIMEOUT_SECONDS = 30
# Long enough for a worker to send what it would send.
SETTLE_SECONDS = 4
PAUSED_INSTANCES = 3
VAULT_SECRET_NAME = "orthanc-dicom-client-secret"
CERTIFICATE_DAYS = 2
ISOLATION_REASON = ("managed identity tests run only in a network namespace with loopback "
                    "alone (unshare --net), as the README's test command does")


class CredentialsTest(harness.OrthancTestCase):
    def setUp(self):
        super().setUp()
        self.secret = "secret-" + secrets.token_hex(16)
        self.fake = fake_azure.FakeAzure(client_secret=self.secret).start()
        self.addCleanup(self.fake.stop)

    def start_source(self, credentials, environment=None):
        section = harness.azure_section(self.fake.url, "v2", Credentials=credentials)
        source = harness.source_orthanc(self.path("source"), section, environment=environment)
        return self.add_orthanc(source).start()

    def entra(self, credential_type, **settings):
        credentials = {"Type": credential_type, "TenantId": self.fake.tenant,
                       "ClientId": self.fake.client_id, "AuthorityHost": self.fake.url}
        credentials.update(settings)
        return credentials

    def app_service_environment(self):
        header = "header-" + secrets.token_hex(8)
        self.fake.set_identity_header(header)
        return {"IDENTITY_ENDPOINT": self.fake.url + "/msi/token", "IDENTITY_HEADER": header}

    def mirror_one_study(self, source, per_series=3):
        instances = harness.make_study(1, per_series)
        harness.upload_all(source, instances)
        total = len(harness.list_instances(source))
        status = source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=total)
        self.assertEqual(status["Counts"]["Failed"], 0, status)
        self.assertEqual(status["Counts"]["Mirrored"], total)
        uids = {harness.sop_uid_of(data) for data in instances}
        self.assertEqual(self.fake.stored_uids() & uids, uids)
        return status

    def token_paths(self):
        return [request["Path"].split("?")[0] for request in self.fake.state()["Requests"]
                if request["Kind"] == "token" and request["Status"] == 200]

    def make_certificate(self, name="client"):
        """Make a self-signed RSA certificate; return (certificate and key PEM, certificate)."""
        key = self.path(f"{name}-key.pem")
        certificate = self.path(f"{name}-certificate.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", certificate, "-days", str(CERTIFICATE_DAYS), "-subj",
                        "/CN=orthanc-azure-dicom-test"], check=True, capture_output=True)
        combined = self.path(f"{name}.pem")
        with open(combined, "w", encoding="ascii") as output:
            for part in (certificate, key):
                with open(part, encoding="ascii") as source:
                    output.write(source.read())
        return combined, certificate

    def test_client_certificate(self):
        combined, certificate = self.make_certificate()
        self.fake.set_assertion_certificate(certificate)
        source = self.start_source(self.entra("ClientCertificate", CertificatePath=combined))
        status = self.mirror_one_study(source)

        self.assertEqual(status["Credentials"]["Type"], "ClientCertificate")
        self.assertIn(f"/{self.fake.tenant}/oauth2/v2.0/token", self.token_paths())
        with open(combined, encoding="ascii") as pem:
            key_line = [line for line in pem.read().splitlines()
                        if line and not line.startswith("-----")][-1]
        self.assertNotIn(key_line, source.read_log())

    def test_client_certificate_wrong_key(self):
        _, certificate = self.make_certificate()
        other, _ = self.make_certificate("other")
        self.fake.set_assertion_certificate(certificate)
        source = self.start_source(self.entra("ClientCertificate", CertificatePath=other))
        harness.upload_all(source, harness.make_study(1, 2))

        def waiting_with_aadsts():
            status = source.status()
            errors = str(status["LastError"]) + str(status["Credentials"]["LastError"])
            return status["State"] == "Waiting" and "AADSTS700027" in errors

        harness.wait_for(waiting_with_aadsts, MIRROR_TIMEOUT_SECONDS,
                         "status Waiting with AADSTS700027", describe_state=source.status)
        self.assertEqual(source.counts()["Failed"], 0)

    def test_workload_identity(self):
        token_file = self.path("federated-token")
        federated = "eyJ" + secrets.token_urlsafe(48)
        with open(token_file, "w", encoding="ascii") as output:
            output.write(federated)
        self.fake.set_federated_token(federated)
        source = self.start_source(self.entra("WorkloadIdentity"),
                                   environment={"AZURE_FEDERATED_TOKEN_FILE": token_file})
        status = self.mirror_one_study(source)

        self.assertEqual(status["Credentials"]["Type"], "WorkloadIdentity")
        self.assertNotIn(federated, source.read_log())
        self.assertNotIn(federated, source.get("/azure-dicom/status").text)

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_managed_identity_app_service(self):
        environment = self.app_service_environment()
        source = self.start_source({"Type": "ManagedIdentity"}, environment)
        status = self.mirror_one_study(source)

        self.assertEqual(status["Credentials"]["Type"], "ManagedIdentity")
        self.assertIn("/msi/token", self.token_paths())
        self.assertNotIn(environment["IDENTITY_HEADER"], source.read_log())
        self.assertNotIn(environment["IDENTITY_HEADER"], source.get("/azure-dicom/status").text)

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_managed_identity_vm(self):
        source = self.start_source({"Type": "ManagedIdentity"},
                                   {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.fake.url})
        self.mirror_one_study(source)

        self.assertIn("/metadata/identity/oauth2/token", self.token_paths())

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_key_vault_secret_rotation(self):
        self.fake.set_vault_secret(VAULT_SECRET_NAME, self.secret)
        key_vault = {"VaultUrl": self.fake.url, "SecretName": VAULT_SECRET_NAME,
                     "Credentials": {"Type": "ManagedIdentity"}}
        source = self.start_source(self.entra("ClientSecret", KeyVault=key_vault),
                                   self.app_service_environment())
        self.mirror_one_study(source)

        # Rotation: the application gets a new secret, the vault a new version, and the old
        # tokens stop working. The plugin must read the vault again when Entra rejects the old
        # secret.
        rotated = "secret-" + secrets.token_hex(16)
        self.fake.set_client_secret(rotated)
        self.fake.set_vault_secret(VAULT_SECRET_NAME, rotated)
        self.fake.revoke_tokens()
        time.sleep(1)
        self.mirror_one_study(source)

        log = source.read_log()
        status_text = source.get("/azure-dicom/status").text
        for value in (self.secret, rotated):
            self.assertNotIn(value, log)
            self.assertNotIn(value, status_text)
        vault_reads = [request for request in self.fake.state()["Requests"]
                       if request["Kind"] == "vault" and request["Status"] == 200]
        self.assertGreaterEqual(len(vault_reads), 2)


    def run_check(self, source):
        response = source.post("/azure-dicom/check")
        self.assertEqual(response.status_code, 200, response.text)
        result = response.json()
        return result, {step["Name"]: step for step in result["Steps"]}

    def qido_requests(self):
        return [request for request in self.fake.state()["Requests"]
                if request["Kind"] == "dicom" and request["Method"] == "GET"]

    def test_check_passes(self):
        source = self.start_source(self.entra("ClientSecret", ClientSecret=self.secret))
        result, steps = self.run_check(source)

        self.assertTrue(result["Passed"], result)
        self.assertEqual(steps["DicomService"]["Status"], "Passed", result)
        self.assertEqual(len(self.qido_requests()), 1)
        self.assertIn("limit=1", self.qido_requests()[0]["Path"])
        for step in result["Steps"]:
            self.assertIn(step["Status"], ("Passed", "Failed", "Skipped", "Info"), step)
            self.assertNotEqual(step["Status"], "Failed", step)
        self.assertNotIn(self.secret, str(result))

        self.mirror_one_study(source)
        result, steps = self.run_check(source)
        self.assertTrue(result["Passed"], result)

    def test_check_wrong_secret(self):
        source = self.start_source(self.entra("ClientSecret", ClientSecret="not-the-secret"))
        result, _ = self.run_check(source)

        self.assertFalse(result["Passed"])
        failed = [step for step in result["Steps"] if step["Status"] == "Failed"]
        self.assertTrue(failed, result)
        self.assertIn("AADSTS7000215", str(failed))
        self.assertTrue(any(step["Hint"] for step in failed), failed)
        self.assertNotIn("not-the-secret", str(result))

    def test_check_forbidden(self):
        source = self.start_source(self.entra("ClientSecret", ClientSecret=self.secret))
        self.fake.fail_next(403, target="dicom", body="Forbidden: no DICOM role assigned")
        result, steps = self.run_check(source)

        self.assertFalse(result["Passed"])
        self.assertEqual(steps["DicomService"]["Status"], "Failed", result)
        self.assertIn("403", steps["DicomService"]["Details"])
        self.assertTrue(steps["DicomService"]["Hint"])

    def test_credentials_refresh(self):
        source = self.start_source(self.entra("ClientSecret", ClientSecret=self.secret))
        self.mirror_one_study(source)
        issued = self.fake.state()["TokensIssued"]
        summary = source.get_json("/azure-dicom/credentials")
        self.assertEqual(summary["Type"], "ClientSecret")
        self.assertNotIn(self.secret, str(summary))

        response = source.post("/azure-dicom/credentials/refresh")
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(self.fake.state()["TokensIssued"], issued + 1)
        self.assertNotIn(self.secret, response.text)

    def test_refresh_keeps_pause(self):
        source = self.start_source(self.entra("ClientSecret", ClientSecret=self.secret))
        response = source.post("/azure-dicom/pause")
        self.assertEqual(response.status_code, 200, response.text)
        instances = harness.make_study(1, PAUSED_INSTANCES)
        harness.upload_all(source, instances)
        harness.wait_for(lambda: source.counts()["Pending"] == PAUSED_INSTANCES,
                         STATE_TIMEOUT_SECONDS, "the instances to be queued",
                         describe_state=source.status)

        response = source.post("/azure-dicom/credentials/refresh")
        self.assertEqual(response.status_code, 200, response.text)
        time.sleep(SETTLE_SECONDS)
        status = source.status()
        self.assertTrue(status["Paused"], status)
        self.assertEqual(status["State"], "Paused", status)
        self.assertEqual(status["Counts"]["Pending"], PAUSED_INSTANCES, status)
        self.assertEqual(self.fake.stored_uids() & {harness.sop_uid_of(data) for data in instances},
                         set())


if __name__ == "__main__":
    harness.main()
