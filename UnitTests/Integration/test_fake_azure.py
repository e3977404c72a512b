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

    def test_fault_response_replaced_stored(self):
        instances = harness.make_study(1, 2)
        self.fake.replace_response_next(200, body="not json", content_type="text/html")
        response = self.stow(instances)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["Content-Type"], "text/html")
        self.assertEqual(response.text, "not json")
        self.assertEqual(self.fake.stored_uids(),
                         {harness.sop_uid_of(data) for data in instances})
        second = self.stow(instances)
        self.assertEqual(second.status_code, 409)

    def test_fault_response_not_stored(self):
        instances = harness.make_study(1, 1)
        self.fake.replace_response_next(200, store=False)
        response = self.stow(instances)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {})
        self.assertEqual(self.fake.stored_uids(), set())
        self.assertEqual(self.stow(instances).status_code, 200)
        self.assertEqual(len(self.fake.stored_uids()), 1)

    def test_fault_response_huge_streamed(self):
        size = 64 * 1024 * 1024 + 3
        instances = harness.make_study(1, 1)
        self.fake.replace_response_next(200, size=size, fill="x")
        body, content_type = multipart(instances)
        headers = {"Content-Type": content_type, **self.bearer()}
        received = 0
        with self.session.post(self.fake.service_base() + "/studies", data=body,
                               headers=headers, stream=True,
                               timeout=REQUEST_TIMEOUT_SECONDS) as response:
            self.assertEqual(response.status_code, 200)
            self.assertEqual(int(response.headers["Content-Length"]), size)
            chunks = response.iter_content(chunk_size=1024 * 1024)
            first = next(chunks)
            received = len(first) + sum(len(chunk) for chunk in chunks)
        self.assertEqual(received, size)
        uid = harness.sop_uid_of(instances[0])
        self.assertTrue(first.startswith(b"{"), first[:100])
        self.assertIn(uid.encode("ascii"), first)
        self.assertTrue(first.rstrip(b"x").endswith(b"}"), first[-100:])
        self.assertEqual(self.fake.stored_uids(), {uid})

    def test_fault_response_fill_checked(self):
        with self.assertRaises(ValueError):
            self.fake.replace_response_next(200, fill=b"ab")

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

    def put(self, instances, version="v2", partition="", study=""):
        body, content_type = multipart(instances)
        headers = {"Content-Type": content_type, "Accept": fake_azure.DICOM_JSON}
        headers.update(self.bearer())
        url = self.fake.service_base(version, partition) + "/studies"
        if study:
            url += "/" + study
        return self.session.put(url, data=body, headers=headers,
                                timeout=REQUEST_TIMEOUT_SECONDS)

    def delete(self, path, partition=""):
        return self.session.delete(f"{self.fake.service_base('v2', partition)}/studies/{path}",
                                   headers=self.bearer(), timeout=REQUEST_TIMEOUT_SECONDS)

    def test_stored_md5(self):
        stowed, preloaded = harness.make_study(1, 2)
        self.stow([stowed], partition="a")
        self.fake.preload(preloaded, partition="a")
        for data in (stowed, preloaded):
            self.assertEqual(self.fake.stored_md5("a", harness.sop_uid_of(data)),
                             hashlib.md5(data).hexdigest())
        self.assertIsNone(self.fake.stored_md5("b", harness.sop_uid_of(stowed)))
        self.assertIsNone(self.fake.stored_md5("a", "1.2.3.4"))

    def test_discard_unrecorded(self):
        instances = harness.make_study(1, 2)
        self.stow(instances, partition="a")
        uid = harness.sop_uid_of(instances[0])
        self.fake.discard("a", uid)
        self.assertEqual(self.fake.stored_uids("a"), {harness.sop_uid_of(instances[1])})
        self.assertEqual(self.fake.delete_requests(), [])
        self.fake.discard("missing", uid)

    def test_put_replaces_v2(self):
        original = harness.make_study(1, 1)[0]
        changed = harness.change_instance(original, SeriesDescription="corrected")
        uid = harness.sop_uid_of(original)
        self.assertEqual(self.stow([original]).status_code, 200)

        response = self.put([changed])
        self.assertEqual(response.status_code, 200, response.text)
        referenced = sequence_uids(response.json(), fake_azure.TAG_REFERENCED_SOP_SEQUENCE)
        self.assertEqual(set(referenced), {uid})
        self.assertNotIn(fake_azure.TAG_FAILED_SOP_SEQUENCE, response.json())
        partition = fake_azure.DEFAULT_PARTITION
        self.assertEqual(self.fake.stored_md5(partition, uid), hashlib.md5(changed).hexdigest())
        self.assertEqual(self.fake.creation_counts(), {uid: 1})
        self.assertEqual(self.fake.replacement_counts(), {uid: 1})
        requests_seen = self.fake.put_requests()
        self.assertEqual(len(requests_seen), 1)
        self.assertEqual(requests_seen[0]["Path"], "/v2/studies")
        self.assertEqual(requests_seen[0]["Instances"], {uid: "Replaced"})
        self.assertEqual(len(self.fake.stow_requests()), 1, "a PUT is not a STOW-RS POST")

    def test_put_new_and_study_url(self):
        instances = harness.make_study(1, 2)
        study = str(pydicom.dcmread(io.BytesIO(instances[0])).StudyInstanceUID)
        response = self.put(instances, partition="a", study=study)
        self.assertEqual(response.status_code, 200, response.text)
        uids = {harness.sop_uid_of(data) for data in instances}
        self.assertEqual(self.fake.stored_uids("a"), uids)
        self.assertEqual(self.fake.creation_counts("a"), {uid: 1 for uid in uids})
        self.assertEqual(self.fake.replacement_counts("a"), {})
        self.assertEqual(self.put(instances, partition="a", study=study).status_code, 200)
        self.assertEqual(self.fake.replacement_counts("a"), {uid: 1 for uid in uids})

        other_study = harness.make_study(1, 1)
        mismatch = self.put(other_study, partition="a", study=study)
        self.assertEqual(mismatch.status_code, 409)
        failed = sequence_uids(mismatch.json(), fake_azure.TAG_FAILED_SOP_SEQUENCE)
        self.assertEqual(failed[harness.sop_uid_of(other_study[0])]
                         [fake_azure.TAG_FAILURE_REASON]["Value"],
                         [fake_azure.REASON_STUDY_UID_MISMATCH])

    def test_put_v1_405(self):
        instances = harness.make_study(1, 1)
        response = self.put(instances, version="v1")
        self.assertEqual(response.status_code, 405)
        self.assertEqual(self.fake.stored_uids(), set())

    def test_delete_per_partition(self):
        instances = harness.make_study(2, 2)
        datasets = [pydicom.dcmread(io.BytesIO(data)) for data in instances]
        self.stow(instances, partition="a")
        self.stow(instances, partition="b")
        study = str(datasets[0].StudyInstanceUID)
        first, second = datasets[0], datasets[2]

        response = self.delete(f"{study}/series/{first.SeriesInstanceUID}/instances/"
                               f"{first.SOPInstanceUID}", partition="b")
        self.assertEqual(response.status_code, 204)
        self.assertEqual(len(self.fake.stored_uids("a")), 4, "partition a must keep everything")
        self.assertNotIn(str(first.SOPInstanceUID), self.fake.stored_uids("b"))
        response = self.delete(f"{study}/series/{second.SeriesInstanceUID}", partition="a")
        self.assertEqual(response.status_code, 204)
        self.assertEqual(len(self.fake.stored_uids("a")), 2)
        self.assertEqual(self.delete(study, partition="b").status_code, 204)
        self.assertEqual(self.fake.stored_uids("b"), set())
        self.assertEqual(self.delete(study, partition="b").status_code, 404)

        deletes = self.fake.delete_requests()
        self.assertEqual([request["Partition"] for request in deletes], ["b", "a", "b", "b"])
        self.assertEqual([request["Status"] for request in deletes], [204, 204, 204, 404])
        self.assertEqual(deletes[0]["StudyInstanceUID"], study)
        self.assertEqual(deletes[0]["SeriesInstanceUID"], str(first.SeriesInstanceUID))
        self.assertEqual(deletes[0]["SOPInstanceUID"], str(first.SOPInstanceUID))
        self.assertEqual(deletes[0]["Deleted"], [str(first.SOPInstanceUID)])
        self.assertEqual(deletes[0]["Method"], "DELETE")
        self.assertEqual(deletes[1]["SeriesInstanceUID"], str(second.SeriesInstanceUID))
        self.assertIsNone(deletes[1]["SOPInstanceUID"])
        self.assertEqual(sorted(deletes[1]["Deleted"]),
                         sorted(str(dataset.SOPInstanceUID) for dataset in datasets[2:]))
        self.assertIsNone(deletes[2]["SeriesInstanceUID"])
        self.assertEqual(len(deletes[2]["Deleted"]), 3)
        self.assertEqual(deletes[3]["Deleted"], [])
        self.assertEqual(len(self.fake.delete_requests("a")), 1)

    def test_delete_faults(self):
        instances = harness.make_study(1, 3)
        self.stow(instances)
        datasets = [pydicom.dcmread(io.BytesIO(data)) for data in instances]
        paths = [f"{dataset.StudyInstanceUID}/series/{dataset.SeriesInstanceUID}/instances/"
                 f"{dataset.SOPInstanceUID}" for dataset in datasets]

        self.fake.fail_next(503, target="delete")
        self.assertEqual(self.delete(paths[0]).status_code, 503)
        self.assertEqual(len(self.fake.stored_uids()), 3, "a failed DELETE must delete nothing")
        failed = self.fake.delete_requests()[-1]
        self.assertEqual(failed["Status"], 503)
        self.assertEqual(failed["SOPInstanceUID"], str(datasets[0].SOPInstanceUID))

        self.fake.reset_next(target="delete")
        with self.assertRaises(requests.ConnectionError):
            self.delete(paths[0])
        self.assertEqual(len(self.fake.stored_uids()), 3)

        self.fake.fail_next(500, target="dicom")
        self.assertEqual(self.delete(paths[0]).status_code, 500,
                         'a "dicom" fault applies to DELETE too')

        self.fake.delay_next(0.5, target="delete")
        started = time.monotonic()
        self.assertEqual(self.delete(paths[0]).status_code, 204)
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        self.assertEqual(self.stow(harness.make_study(1, 1)).status_code, 200,
                         "a DELETE fault must not reach STOW-RS")
        self.assertEqual(self.delete(paths[1]).status_code, 204)

    def test_put_faults(self):
        instances = harness.make_study(1, 1)
        self.fake.fail_next(429, retry_after=2, target="put")
        self.assertEqual(self.stow(instances).status_code, 200, "a PUT fault must not hit POST")
        response = self.put(instances)
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response.headers["Retry-After"], "2")
        self.fake.delay_next(0.5, target="put")
        started = time.monotonic()
        self.assertEqual(self.put(instances).status_code, 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        self.fake.reset_next(target="put")
        with self.assertRaises(requests.ConnectionError):
            self.put(harness.make_study(1, 1, 200000))
        self.assertEqual([request["Status"] for request in self.fake.put_requests()],
                         [429, 200, 0])

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
