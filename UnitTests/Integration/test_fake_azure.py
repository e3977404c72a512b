"""Checks of the fake Azure endpoints themselves, so that the plugin's tests can trust them."""

import base64
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import pydicom
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

DICOM_SCOPE = fake_azure.DICOM_RESOURCE + "/.default"
VAULT_SCOPE = fake_azure.VAULT_RESOURCE + "/.default"
REQUEST_TIMEOUT_SECONDS = 10


def multipart(instances, part_type="application/dicom", boundary=None):
    """Return (body, Content-Type) of a STOW-RS request with one part per instance."""
    boundary = boundary or secrets.token_hex(12)
    body = b""
    for data in instances:
        body += (f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def base64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sequence_uids(answer, tag):
    items = answer.get(tag, {}).get("Value", [])
    return {item[fake_azure.TAG_REFERENCED_SOP_INSTANCE_UID]["Value"][0]: item for item in items}


class FakeAzureTest(unittest.TestCase):
    def setUp(self):
        self.fake = fake_azure.FakeAzure().start()
        self.addCleanup(self.fake.stop)
        self.session = requests.Session()
        self.addCleanup(self.session.close)

    def token(self, scope=DICOM_SCOPE, secret=fake_azure.DEFAULT_CLIENT_SECRET):
        return self.session.post(
            f"{self.fake.url}/{self.fake.tenant}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": self.fake.client_id,
                  "client_secret": secret, "scope": scope},
            timeout=REQUEST_TIMEOUT_SECONDS)

    def bearer(self):
        return {"Authorization": "Bearer " + self.token().json()["access_token"]}

    def stow(self, instances, version="v2", partition="", headers=None, **options):
        body, content_type = multipart(instances, **options)
        all_headers = {"Content-Type": content_type, "Accept": fake_azure.DICOM_JSON}
        all_headers.update(self.bearer() if headers is None else headers)
        return self.session.post(self.fake.service_base(version, partition) + "/studies",
                                 data=body, headers=all_headers,
                                 timeout=REQUEST_TIMEOUT_SECONDS)

    def test_token_success(self):
        response = self.token()
        self.assertEqual(response.status_code, 200)
        answer = response.json()
        self.assertEqual(answer["token_type"], "Bearer")
        self.assertEqual(answer["expires_in"], fake_azure.DEFAULT_TOKEN_LIFETIME_SECONDS)
        self.assertTrue(answer["access_token"])

    def test_token_wrong_secret(self):
        response = self.token(secret="wrong")
        self.assertEqual(response.status_code, 401)
        answer = response.json()
        self.assertEqual(answer["error"], "invalid_client")
        self.assertEqual(answer["error_codes"], [fake_azure.AADSTS_INVALID_SECRET])
        self.assertIn("AADSTS7000215", answer["error_description"])

    def test_stow_requires_token(self):
        instance = harness.make_study(1, 1)[0]
        response = self.stow([instance], headers={})
        self.assertEqual(response.status_code, 401)
        self.assertEqual(self.fake.stored_uids(), set())

    def test_stow_expired_token(self):
        self.fake.set_token_lifetime(1)
        headers = self.bearer()
        time.sleep(1.5)
        response = self.stow(harness.make_study(1, 1), headers=headers)
        self.assertEqual(response.status_code, 401)

    def test_stow_vault_token_rejected(self):
        token = self.token(scope=VAULT_SCOPE).json()["access_token"]
        response = self.stow(harness.make_study(1, 1),
                             headers={"Authorization": "Bearer " + token})
        self.assertEqual(response.status_code, 401)

    def test_stow_all_stored(self):
        instances = harness.make_study(2, 3)
        response = self.stow(instances)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["Content-Type"], fake_azure.DICOM_JSON)
        uids = {harness.sop_uid_of(data) for data in instances}
        referenced = sequence_uids(response.json(), fake_azure.TAG_REFERENCED_SOP_SEQUENCE)
        self.assertEqual(set(referenced), uids)
        self.assertNotIn(fake_azure.TAG_FAILED_SOP_SEQUENCE, response.json())
        self.assertEqual(self.fake.stored_uids(), uids)
        self.assertEqual(set(self.fake.creation_counts().values()), {1})

    def test_stow_second_time_409(self):
        instances = harness.make_study(1, 2)
        self.assertEqual(self.stow(instances).status_code, 200)
        response = self.stow(instances)
        self.assertEqual(response.status_code, 409)
        failed = sequence_uids(response.json(), fake_azure.TAG_FAILED_SOP_SEQUENCE)
        self.assertEqual(len(failed), 2)
        for item in failed.values():
            self.assertEqual(item[fake_azure.TAG_FAILURE_REASON]["Value"],
                             [fake_azure.REASON_ALREADY_EXISTS])
        self.assertEqual(set(self.fake.creation_counts().values()), {1})

    def test_stow_partial_202(self):
        stored = harness.make_study(1, 1)
        self.stow(stored)
        response = self.stow(stored + harness.make_study(1, 1))
        self.assertEqual(response.status_code, 202)
        self.assertEqual(len(sequence_uids(response.json(),
                                           fake_azure.TAG_REFERENCED_SOP_SEQUENCE)), 1)
        self.assertEqual(len(sequence_uids(response.json(),
                                           fake_azure.TAG_FAILED_SOP_SEQUENCE)), 1)

    def test_stow_validation_failure(self):
        invalid = harness.make_study(1, 1, patient_id="INVALID")
        response = self.stow(invalid)
        self.assertEqual(response.status_code, 409)
        failed = sequence_uids(response.json(), fake_azure.TAG_FAILED_SOP_SEQUENCE)
        item = failed[harness.sop_uid_of(invalid[0])]
        self.assertEqual(item[fake_azure.TAG_FAILURE_REASON]["Value"],
                         [fake_azure.REASON_VALIDATION_FAILED])

    def test_stow_warning_v2(self):
        instances = harness.make_study(1, 2)
        warned = harness.sop_uid_of(instances[0])
        self.fake.set_warning([warned], fake_azure.WARNING_COERCED)
        response = self.stow(instances)
        self.assertEqual(response.status_code, 202)
        referenced = sequence_uids(response.json(), fake_azure.TAG_REFERENCED_SOP_SEQUENCE)
        self.assertEqual(referenced[warned][fake_azure.TAG_WARNING_REASON]["Value"],
                         [fake_azure.WARNING_COERCED])
        self.assertEqual(len(referenced), 2)

    def test_stow_warning_ignored_v1(self):
        instances = harness.make_study(1, 1)
        self.fake.set_warning([harness.sop_uid_of(instances[0])])
        self.assertEqual(self.stow(instances, version="v1").status_code, 200)

    def test_stow_part_type_415(self):
        response = self.stow(harness.make_study(1, 1),
                             part_type="application/dicom; transfer-syntax=*")
        self.assertEqual(response.status_code, 415)
        self.assertEqual(self.fake.stored_uids(), set())

    def test_stow_start_parameter_400(self):
        body, content_type = multipart(harness.make_study(1, 1))
        headers = self.bearer()
        headers["Content-Type"] = content_type + '; start="<a>"'
        response = self.session.post(self.fake.service_base() + "/studies", data=body,
                                     headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(response.status_code, 400)

    def test_stow_unknown_version_404(self):
        response = self.session.post(self.fake.url + "/v9/studies", data=b"x",
                                     timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(response.status_code, 404)

    def test_stow_partition(self):
        instances = harness.make_study(1, 1)
        self.assertEqual(self.stow(instances, partition="site-a").status_code, 200)
        uid = harness.sop_uid_of(instances[0])
        self.assertEqual(self.fake.stored_uids("site-a"), {uid})
        self.assertEqual(self.fake.stored_uids(), set())

    def test_fault_429_retry_after(self):
        self.fake.fail_next(429, count=2, retry_after=3)
        instances = harness.make_study(1, 1)
        first = self.stow(instances)
        self.assertEqual(first.status_code, 429)
        self.assertEqual(first.headers["Retry-After"], "3")
        self.assertEqual(self.stow(instances).status_code, 429)
        self.assertEqual(self.stow(instances).status_code, 200)

    def test_fault_413_limit(self):
        self.fake.set_max_body_bytes(10000)
        self.assertEqual(self.stow(harness.make_study(1, 1, 20000)).status_code, 413)
        self.assertEqual(self.stow(harness.make_study(1, 1, 2000)).status_code, 200)

    def test_fault_45071_then_stored(self):
        instances = harness.make_study(1, 1)
        self.fake.set_being_created([harness.sop_uid_of(instances[0])], count=1)
        response = self.stow(instances)
        self.assertEqual(response.status_code, 409)
        item = next(iter(sequence_uids(response.json(),
                                       fake_azure.TAG_FAILED_SOP_SEQUENCE).values()))
        self.assertEqual(item[fake_azure.TAG_FAILURE_REASON]["Value"],
                         [fake_azure.REASON_BEING_CREATED])
        self.assertEqual(self.stow(instances).status_code, 200)

    def test_fault_dropped_unconfirmed(self):
        instances = harness.make_study(1, 2)
        dropped = harness.sop_uid_of(instances[0])
        self.fake.set_dropped([dropped], count=1)
        response = self.stow(instances)
        self.assertEqual(response.status_code, 200)
        referenced = sequence_uids(response.json(), fake_azure.TAG_REFERENCED_SOP_SEQUENCE)
        self.assertNotIn(dropped, referenced)
        self.assertNotIn(dropped, self.fake.stored_uids())

    def test_fault_reset_connection(self):
        self.fake.reset_next(count=1)
        with self.assertRaises(requests.ConnectionError):
            self.stow(harness.make_study(1, 1, 200000))
        self.assertEqual(self.stow(harness.make_study(1, 1)).status_code, 200)

    def test_qido_and_delete(self):
        instances = harness.make_study(2, 1)
        self.stow(instances)
        studies = self.session.get(self.fake.service_base() + "/studies?limit=1",
                                   headers=self.bearer(), timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(studies.status_code, 200)
        study = studies.json()[0][fake_azure.TAG_STUDY_INSTANCE_UID]["Value"][0]
        deleted = self.session.delete(f"{self.fake.service_base()}/studies/{study}",
                                      headers=self.bearer(), timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(deleted.status_code, 204)
        self.assertEqual(self.fake.stored_uids(), set())
        again = self.session.delete(f"{self.fake.service_base()}/studies/{study}",
                                    headers=self.bearer(), timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(again.status_code, 404)

    def test_delete_series_and_instance(self):
        instances = harness.make_study(2, 2)
        self.stow(instances)
        datasets = [pydicom.dcmread(io.BytesIO(data)) for data in instances]
        study = str(datasets[0].StudyInstanceUID)
        first_series = str(datasets[0].SeriesInstanceUID)
        last = datasets[-1]
        base = f"{self.fake.service_base()}/studies/{study}"
        series = self.session.delete(f"{base}/series/{first_series}", headers=self.bearer(),
                                     timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(series.status_code, 204)
        self.assertEqual(len(self.fake.stored_uids()), 2)
        instance = self.session.delete(
            f"{base}/series/{last.SeriesInstanceUID}/instances/{last.SOPInstanceUID}",
            headers=self.bearer(), timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(instance.status_code, 204)
        self.assertEqual(self.fake.stored_uids(), {str(datasets[2].SOPInstanceUID)})

    def test_client_assertion_signature(self):
        directory = tempfile.mkdtemp(prefix="fake-azure-jwt-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        key = os.path.join(directory, "key.pem")
        certificate = os.path.join(directory, "certificate.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", certificate, "-days", "1", "-subj", "/CN=fake-test"],
                       check=True, capture_output=True)
        self.fake.set_assertion_certificate(certificate)
        with open(certificate, encoding="ascii") as pem:
            der = ssl.PEM_cert_to_DER_cert(pem.read())
        header = {"alg": "RS256", "typ": "JWT", "x5t": base64url(hashlib.sha1(der).digest())}
        claims = {"aud": f"{self.fake.url}/{self.fake.tenant}/oauth2/v2.0/token",
                  "iss": self.fake.client_id, "sub": self.fake.client_id,
                  "exp": int(time.time()) + 600}
        signed = base64url(json.dumps(header).encode()) + "." + \
            base64url(json.dumps(claims).encode())
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key],
                                   input=signed.encode(), capture_output=True, check=True).stdout

        def request_token(assertion):
            return self.session.post(
                f"{self.fake.url}/{self.fake.tenant}/oauth2/v2.0/token",
                data={"grant_type": "client_credentials", "client_id": self.fake.client_id,
                      "client_assertion_type": fake_azure.JWT_BEARER,
                      "client_assertion": assertion, "scope": DICOM_SCOPE},
                timeout=REQUEST_TIMEOUT_SECONDS)

        self.assertEqual(request_token(signed + "." + base64url(signature)).status_code, 200)
        forged = bytes([signature[0] ^ 1]) + signature[1:]
        rejected = request_token(signed + "." + base64url(forged))
        self.assertEqual(rejected.status_code, 401)
        self.assertEqual(rejected.json()["error_codes"], [fake_azure.AADSTS_INVALID_ASSERTION])

    def test_control_api(self):
        response = self.session.post(self.fake.url + "/_control",
                                     data=json.dumps({"Action": "FailNext", "Status": 503,
                                                      "Count": 1}),
                                     timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.stow(harness.make_study(1, 1)).status_code, 503)
        state = self.session.get(self.fake.url + "/_control/state",
                                 timeout=REQUEST_TIMEOUT_SECONDS).json()
        statuses = [request["Status"] for request in state["Requests"]
                    if request["Kind"] == "stow"]
        self.assertEqual(statuses, [503])

    def test_control_unknown_action(self):
        response = self.session.post(self.fake.url + "/_control",
                                     data=json.dumps({"Action": "Explode"}),
                                     timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(response.status_code, 400)
        self.assertIn("Explode", response.json()["Message"])

    def test_managed_identity_arc(self):
        directory = tempfile.mkdtemp(prefix="fake-azure-arc-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        key_path = os.path.join(directory, "identity.key")
        self.fake.set_arc_key_file(key_path, "arc-key-value")
        url = (f"{self.fake.url}/metadata/identity/oauth2/token?api-version=2020-06-01"
               f"&resource={fake_azure.DICOM_RESOURCE}")
        challenge = self.session.get(url, headers={"Metadata": "true"},
                                     timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(challenge.status_code, 401)
        realm = challenge.headers["WWW-Authenticate"].split("=", 1)[1]
        self.assertEqual(realm, key_path)
        with open(realm, encoding="utf-8") as key_file:
            key = key_file.read()
        answer = self.session.get(url, headers={"Metadata": "true",
                                                "Authorization": "Basic " + key},
                                  timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(answer.status_code, 200)
        token = answer.json()["access_token"]
        stored = self.stow(harness.make_study(1, 1), headers={"Authorization": "Bearer " + token})
        self.assertEqual(stored.status_code, 200)

    def test_vault_secret_rotation(self):
        first = self.fake.set_vault_secret("dicom-secret", "one")
        self.fake.set_vault_secret("dicom-secret", "two")
        token = self.token(scope=VAULT_SCOPE).json()["access_token"]
        headers = {"Authorization": "Bearer " + token}
        latest = self.session.get(f"{self.fake.url}/secrets/dicom-secret?api-version=7.4",
                                  headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(latest.json()["value"], "two")
        pinned = self.session.get(f"{self.fake.url}/secrets/dicom-secret/{first}"
                                  "?api-version=7.4", headers=headers,
                                  timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(pinned.json()["value"], "one")
        missing = self.session.get(f"{self.fake.url}/secrets/other?api-version=7.4",
                                   headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(missing.status_code, 404)

    def test_program_serves(self):
        port = harness.free_port()
        process = subprocess.Popen(
            [sys.executable, fake_azure.__file__, "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            self.assertIn(f"127.0.0.1:{port}", process.stdout.readline().decode())
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
        finally:
            process.terminate()
            code = process.wait(timeout=10)
            process.stdout.close()
        self.assertEqual(code, 0)


if __name__ == "__main__":
    harness.main()
