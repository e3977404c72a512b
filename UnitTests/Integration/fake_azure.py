#!/usr/bin/python3
"""A fake of the Azure endpoints that the mirror plugin calls, on loopback only.

It serves, on one port of 127.0.0.1 (over HTTPS when it is given a certificate):
- the Microsoft Entra ID token endpoint, POST /{tenant}/oauth2/v2.0/token (client credentials
  with a client secret or a client assertion);
- the managed identity endpoints: the instance metadata route GET /metadata/identity/oauth2/token
  (with the Azure Arc challenge when enabled) and the App Service route GET /msi/token. Over
  HTTPS they move to a second, plain http port (identity_url), as on a real host;
- Key Vault secrets, GET /secrets/{name}[/{version}]?api-version=7.4, with versions, disabled
  and deleted secrets and principals without access;
- the Azure Health Data Services DICOM service, under /v1 and /v2 with an optional
  /partitions/{partition}: STOW-RS POST .../studies[/{study}], the v2 upsert PUT
  .../studies[/{study}], QIDO-RS GET .../studies and DELETE of studies, series and instances,
  with the responses of the real service (DICOM JSON, the HTTP statuses and the FailureReason
  and WarningReason codes). It keeps the MD5 of each stored file, so that a test can tell
  which content the service stores;
- a control API for tests: POST /_control {"Action": ..., ...} and GET /_control/state.

Import it and use FakeAzure (start() runs the server in a thread and its methods set faults),
or run it as a program: /usr/bin/python3 fake_azure.py --port N.
"""

import argparse
import base64
import email.message
import hashlib
import io
import json
import os
import secrets
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom

LOOPBACK_HOSTS = ("127.0.0.1", "::1")
DEFAULT_TENANT = "00000000-0000-0000-0000-00000000feed"
DEFAULT_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
DEFAULT_CLIENT_SECRET = "fake-client-secret"
DICOM_RESOURCE = "https://dicom.healthcareapis.azure.com"
VAULT_RESOURCE = "https://vault.azure.net"
DEFAULT_PARTITION = "Microsoft.Default"
API_VERSIONS = ("v1", "v2")
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600
SYSTEM_ASSIGNED = "system-assigned"
VM_API_VERSION = "2018-02-01"
ARC_API_VERSION = "2020-06-01"
APP_SERVICE_API_VERSION = "2019-08-01"
ARC_KEY_FILE_MODE = 0o600
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10
# Bytes written at a time when a replaced response is padded (FakeAzure.replace_response_next).
RESPONSE_PIECE_BYTES = 1024 * 1024
TEST_CERTIFICATE_DAYS = 2
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

DICOM_JSON = "application/dicom+json"
DICOM_PART = "application/dicom"

# DICOM JSON tags of the Store Instances Response Module (PS3.18 annex I).
TAG_RETRIEVE_URL = "00081190"
TAG_FAILED_SOP_SEQUENCE = "00081198"
TAG_REFERENCED_SOP_SEQUENCE = "00081199"
TAG_REFERENCED_SOP_CLASS_UID = "00081150"
TAG_REFERENCED_SOP_INSTANCE_UID = "00081155"
TAG_FAILURE_REASON = "00081197"
TAG_WARNING_REASON = "00081196"
TAG_STUDY_INSTANCE_UID = "0020000D"

# FailureReason and WarningReason codes of the Azure DICOM service.
REASON_PROCESSING_FAILURE = 272
REASON_VALIDATION_FAILED = 43264
REASON_STUDY_UID_MISMATCH = 43265
REASON_ALREADY_EXISTS = 45070
REASON_BEING_CREATED = 45071
WARNING_COERCED = 45063
WARNING_DATASET_HAS_WARNINGS = 1

# Entra ID error codes (AADSTS) that the fake returns.
AADSTS_INVALID_SECRET = 7000215
AADSTS_INVALID_ASSERTION = 700027
AADSTS_TENANT_NOT_FOUND = 90002
AADSTS_INVALID_SCOPE = 70011
AADSTS_MISSING_PARAMETER = 900144
AADSTS_UNSUPPORTED_GRANT = 70003

# Paths that the plain http port of an HTTPS fake serves: the managed identity endpoints.
IDENTITY_PATHS = ("/metadata/identity/oauth2/token", "/msi/token")

REQUIRED_ATTRIBUTES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def run_openssl(*arguments):
    subprocess.run(["openssl", *arguments], check=True, capture_output=True)


def make_test_pki(directory, host="127.0.0.1"):
    """Make a test CA and a server certificate for host signed by it, with the openssl command.

    Returns {"Ca": CA certificate, "Certificate": server certificate, "Key": its key}, paths of
    PEM files in directory. The server certificate names host as subjectAltName IP, which is
    what libcurl checks for a URL with an IP address.
    """
    paths = {name: os.path.join(directory, file) for name, file in (
        ("Ca", "test-ca.pem"), ("CaKey", "test-ca-key.pem"), ("Certificate", "server.pem"),
        ("Key", "server-key.pem"), ("Request", "server.csr"), ("Extensions", "server.ext"))}
    run_openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", paths["CaKey"],
                "-out", paths["Ca"], "-days", str(TEST_CERTIFICATE_DAYS), "-subj",
                "/CN=Orthanc Azure DICOM test CA", "-addext",
                "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run_openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", paths["Key"],
                "-out", paths["Request"], "-subj", f"/CN={host}")
    with open(paths["Extensions"], "w", encoding="ascii") as extensions:
        extensions.write(f"subjectAltName=IP:{host}\nbasicConstraints=CA:FALSE\n"
                         "extendedKeyUsage=serverAuth\n")
    run_openssl("x509", "-req", "-in", paths["Request"], "-CA", paths["Ca"], "-CAkey",
                paths["CaKey"], "-CAcreateserial", "-days", str(TEST_CERTIFICATE_DAYS),
                "-extfile", paths["Extensions"], "-out", paths["Certificate"])
    return {name: paths[name] for name in ("Ca", "Certificate", "Key")}


def reason_counts(uids, count):
    return {uid: count for uid in uids}


class Token:
    def __init__(self, value, audience, principal, expires_at):
        self.value = value
        self.audience = audience
        self.principal = principal
        self.expires_at = expires_at


class Fault:
    """A planned misbehaviour for the next requests of one kind.

    The kinds are "stow" (POST of STOW-RS), "put" (the v2 upsert), "delete", "dicom" (every
    DICOM request but STOW-RS POST: QIDO-RS, PUT and DELETE), "token", "vault" and "any".
    """

    def __init__(self, kind, target, count, status=0, retry_after=None, body="", seconds=0.0,
                 content_type="", size=0, fill=b" ", store=True, echo_headers=False):
        self.kind = kind  # "status", "reset", "delay" or "response"
        self.target = target
        self.remaining = count
        self.status = status
        self.retry_after = retry_after
        self.body = body
        # Only for "status": the body quotes the request's headers, as some gateways' error
        # pages do.
        self.echo_headers = echo_headers
        self.seconds = seconds
        # Only for "response": the Content-Type, the body's size in bytes after padding with
        # fill, and whether the request stores its instances before the response is replaced.
        self.content_type = content_type
        self.size = size
        self.fill = fill
        self.store = store


class FakeAzure:
    """The fake's state and its control methods; start() serves it on 127.0.0.1."""

    def __init__(self, port=0, host="127.0.0.1", tenant=DEFAULT_TENANT,
                 client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                 require_auth=True, token_lifetime=DEFAULT_TOKEN_LIFETIME_SECONDS,
                 tls_files=None):
        """tls_files is (certificate chain PEM, key PEM) to serve HTTPS, or None for http."""
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the fake listens on loopback only, not on {host!r}")
        self.host = host
        self.requested_port = port
        self.tls_files = tls_files
        self.lock = threading.RLock()
        self.server = None
        self.thread = None
        self.identity_server = None
        self.identity_thread = None
        self.arc_folder = None
        self.arc_key_files = []
        self.arc_keys = []
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.require_auth = require_auth
        self.reset(keep_credentials=True)
        self.token_lifetime = token_lifetime

    # Life cycle.

    def start(self):
        ssl_context = None
        if self.tls_files is not None:
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(*self.tls_files)
        self.server, self.thread = self.serve(self.requested_port, ssl_context, False)
        if ssl_context is not None:
            self.identity_server, self.identity_thread = self.serve(0, None, True)
        return self

    def serve(self, port, ssl_context, identity_only):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("FakeAzureServer", (QuietHTTPServer,),
                            {"address_family": family, "daemon_threads": True})
        server = server_class((self.host, port), FakeAzureHandler)
        server.fake = self
        server.ssl_context = ssl_context
        server.identity_only = identity_only
        thread = threading.Thread(target=server.serve_forever, name="fake-azure", daemon=True)
        thread.start()
        return server, thread

    def stop(self):
        for server, thread in ((self.server, self.thread),
                               (self.identity_server, self.identity_thread)):
            if server is not None:
                server.shutdown()
                server.server_close()
                server.close_connections()
                thread.join()
        self.server = None
        self.identity_server = None
        self.remove_arc_key_files()

    @property
    def port(self):
        return self.server.server_address[1]

    def server_url(self, server, scheme):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{server.server_address[1]}"

    @property
    def url(self):
        """The base URL of Entra ID, Key Vault and the DICOM service (https:// with TLS)."""
        return self.server_url(self.server, "https" if self.tls_files else "http")

    @property
    def identity_url(self):
        """The base URL of the managed identity endpoints, always plain http."""
        return self.server_url(self.identity_server or self.server, "http")

    def service_base(self, api_version="v2", partition=""):
        base = f"{self.url}/{api_version}"
        return f"{base}/partitions/{partition}" if partition else base

    # Control methods (also reachable through POST /_control).

    def reset(self, keep_credentials=True):
        """Forget stored instances, tokens, requests and faults."""
        with self.lock:
            if not keep_credentials:
                self.client_secret = DEFAULT_CLIENT_SECRET
            self.token_lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
            self.tokens = {}
            self.tokens_issued = 0
            self.issued_values = []
            self.partitions = {}
            self.created = {}
            self.replaced = {}
            self.requests = []
            self.faults = []
            self.max_body_bytes = 0
            self.delay_seconds = 0.0
            self.being_created = {}
            self.processing_failures = {}
            self.dropped = {}
            self.store_dropped = False
            self.warnings = {}
            self.invalid_patient_ids = {"INVALID"}
            self.require_patient_id = True
            self.federated_token = None
            self.assertion_certificate = None
            self.identity_header = None
            self.managed_identities = None
            self.arc_key_file = None
            self.arc_key = None
            self.vault_secrets = {}
            self.vault_forbidden = set()

    def fail_next(self, status, count=1, retry_after=None, body="", target="stow",
                  echo_headers=False):
        """Respond to the next count requests of target with status (and Retry-After).

        With echo_headers, the body is a text page that quotes the request's headers, the
        Authorization header included. A fault of a DELETE or PUT is applied before the request
        changes anything.
        """
        with self.lock:
            self.faults.append(Fault("status", target, count, status=status,
                                     retry_after=retry_after, body=body,
                                     echo_headers=echo_headers))

    def reset_next(self, count=1, target="stow"):
        """Reset the connection in the middle of the next count request bodies."""
        with self.lock:
            self.faults.append(Fault("reset", target, count))

    def delay_next(self, seconds, count=1, target="stow"):
        """Wait seconds before handling each of the next count requests of target.

        The request is handled after the wait even when its client has gone meanwhile, so a
        DELETE whose client was killed during the wait still deletes.
        """
        with self.lock:
            self.faults.append(Fault("delay", target, count, seconds=seconds))

    def replace_response_next(self, status=200, body=None, content_type=DICOM_JSON, count=1, size=0,
                    fill=b" ", store=True):
        """Replace the response to the next count STOW-RS requests, as a broken service would.

        With store, the instances are stored as usual and then the response is replaced.
        Without it, nothing is stored. body None keeps the body that the fake would have sent
        ("{}" without store). When size is larger than the body, the body is padded with the byte
        fill up to size bytes and streamed in pieces, so a body of hundreds of MB needs no
        memory.
        """
        if isinstance(fill, str):
            fill = fill.encode("ascii")
        if len(fill) != 1:
            raise ValueError(f"fill must be one byte, not {fill!r}")
        with self.lock:
            self.faults.append(Fault("response", "stow", count, status=status, body=body,
                                     content_type=content_type, size=size, fill=fill,
                                     store=store))

    def clear_faults(self):
        """Forget the planned faults that have not been used yet."""
        with self.lock:
            self.faults = []

    def set_max_body_bytes(self, limit):
        """Respond 413 to STOW requests whose body is larger than limit bytes (0: no limit)."""
        with self.lock:
            self.max_body_bytes = limit

    def set_delay(self, seconds):
        """Wait seconds before responding to every STOW request."""
        with self.lock:
            self.delay_seconds = seconds

    def set_being_created(self, uids, count=1):
        """Fail the given SOP Instance UIDs with 45071 count times each, then store them."""
        with self.lock:
            self.being_created.update(reason_counts(uids, count))

    def set_processing_failure(self, uids, count=1):
        """Fail the given SOP Instance UIDs with 272 count times each."""
        with self.lock:
            self.processing_failures.update(reason_counts(uids, count))

    def set_dropped(self, uids, count=1, store=False):
        """Leave the given UIDs out of count responses. With store, store them all the same."""
        with self.lock:
            self.dropped.update(reason_counts(uids, count))
            self.store_dropped = store

    def set_warning(self, uids, reason=WARNING_COERCED):
        """Store the given UIDs with a WarningReason (API v2 only, as the real service)."""
        with self.lock:
            for uid in uids:
                self.warnings[uid] = reason

    def set_invalid_patient_ids(self, patient_ids, require_patient_id=True):
        """Reject with 43264 the instances with these PatientID values (and, if set, none)."""
        with self.lock:
            self.invalid_patient_ids = set(patient_ids)
            self.require_patient_id = require_patient_id

    def set_token_lifetime(self, seconds):
        with self.lock:
            self.token_lifetime = seconds

    def set_client_secret(self, secret):
        """Change the application's secret: token requests with the old one fail with 7000215."""
        with self.lock:
            self.client_secret = secret

    def revoke_tokens(self):
        """Make every token issued so far invalid, as a revoked session would."""
        with self.lock:
            self.tokens = {}

    def set_federated_token(self, token):
        """Accept token as the client assertion of workload identity."""
        with self.lock:
            self.federated_token = token

    def set_assertion_certificate(self, path):
        """Verify client assertions against this PEM certificate (x5t and RS256 signature)."""
        with self.lock:
            self.assertion_certificate = path

    def set_identity_header(self, value):
        """Enable the App Service managed identity route, whose X-IDENTITY-HEADER is value."""
        with self.lock:
            self.identity_header = value

    def set_arc_key_file(self, path, key):
        """Enable the Azure Arc challenge: the fake writes key to path and expects it back."""
        with open(path, "w", encoding="utf-8") as output:
            output.write(key)
        with self.lock:
            self.arc_key_file = path
            self.arc_key = key

    def set_managed_identities(self, client_ids, system_assigned=True):
        """Accept only these user-assigned client ids (and, if set, the system-assigned one).

        The instance metadata and App Service routes then check the client_id parameter, and
        their tokens belong to that client id or to "system-assigned".
        """
        with self.lock:
            self.managed_identities = set(client_ids)
            if system_assigned:
                self.managed_identities.add(SYSTEM_ASSIGNED)

    def enable_arc(self, folder):
        """Respond to the instance metadata route with the Azure Arc challenge.

        Each challenge writes a new random key to a new <random>.key file in folder and names
        it in WWW-Authenticate. The fake removes its files once used, and all of them in stop().
        """
        os.makedirs(folder, exist_ok=True)
        with self.lock:
            self.arc_folder = folder

    def write_arc_key_file(self):
        """Write a new Arc key file in arc_folder; return its path."""
        key = secrets.token_urlsafe(32)
        path = os.path.join(self.arc_folder, secrets.token_hex(16) + ".key")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ARC_KEY_FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="ascii") as output:
            output.write(key)
        with self.lock:
            self.arc_key_files.append(path)
            self.arc_keys.append(key)
            self.arc_key_file = path
            self.arc_key = key
        return path

    def remove_arc_key_files(self):
        with self.lock:
            paths, self.arc_key_files = self.arc_key_files, []
        for path in paths:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    def set_vault_secret(self, name, value, content_type=None, expires=None):
        """Add a new version of a Key Vault secret and return its version id.

        content_type is stored as the secret's contentType (application/x-pkcs12 for a
        base64 PFX, application/x-pem-file for PEM), and expires (seconds since the epoch) as
        attributes.exp.
        """
        version = secrets.token_hex(16)
        with self.lock:
            self.vault_secrets.setdefault(name, []).append(
                {"version": version, "value": value, "created": int(time.time()),
                 "contentType": content_type, "exp": expires, "enabled": True})
        return version

    def set_vault_secret_enabled(self, name, enabled, version=None):
        """Enable or disable one version of a secret (the newest when version is None)."""
        with self.lock:
            versions = self.vault_secrets[name]
            chosen = [entry for entry in versions if entry["version"] == version] or versions[-1:]
            chosen[0]["enabled"] = enabled

    def delete_vault_secret(self, name):
        """Delete every version of a secret: reads then fail with 404 SecretNotFound."""
        with self.lock:
            self.vault_secrets.pop(name, None)

    def set_vault_forbidden(self, principals):
        """Respond 403 ForbiddenByRbac to Key Vault requests with a token of these principals."""
        with self.lock:
            self.vault_forbidden = set(principals)

    def secret_values(self):
        """Return every secret that the fake stores or issued, for tests that search for leaks.

        These are the client secret, the vault's secret values, the federated token, the Arc
        keys and every access token issued since the last reset.
        """
        with self.lock:
            values = [self.client_secret, self.federated_token, self.identity_header]
            values += [entry["value"] for versions in self.vault_secrets.values()
                       for entry in versions]
            values += self.arc_keys + self.issued_values
            if self.arc_key:
                values.append(self.arc_key)
        return [value for value in values if value]

    def preload(self, data, partition=DEFAULT_PARTITION):
        """Store a Part 10 file as if an earlier STOW had created it (not counted as created)."""
        dataset = read_dataset(data)
        with self.lock:
            self.partitions.setdefault(partition, {})[str(dataset.SOPInstanceUID)] = \
                describe_instance(dataset, data)

    def discard(self, partition, sop_uid):
        """Remove a stored instance as another client's DELETE would, without recording it."""
        with self.lock:
            self.partitions.get(partition, {}).pop(sop_uid, None)

    # Queries of the state.

    def stored_uids(self, partition=DEFAULT_PARTITION):
        with self.lock:
            return set(self.partitions.get(partition, {}))

    def stored_instances(self, partition=DEFAULT_PARTITION):
        """Return {SOP Instance UID: its study, series, class, size and MD5} of a partition."""
        with self.lock:
            return {uid: dict(value) for uid, value in self.partitions.get(partition, {}).items()}

    def stored_md5(self, partition, sop_uid):
        """Return the hex MD5 of the file stored for sop_uid in partition, or None."""
        with self.lock:
            instance = self.partitions.get(partition, {}).get(sop_uid)
            return instance["MD5"] if instance is not None else None

    def creation_counts(self, partition=DEFAULT_PARTITION):
        with self.lock:
            return dict(self.created.get(partition, {}))

    def replacement_counts(self, partition=DEFAULT_PARTITION):
        """Return {SOP Instance UID: times an upsert replaced the stored copy} of a partition."""
        with self.lock:
            return dict(self.replaced.get(partition, {}))

    def requests_of(self, kind):
        """Return the recorded requests of one kind ("stow", "put", "delete", ...), in order."""
        with self.lock:
            return [dict(request) for request in self.requests if request["Kind"] == kind]

    def stow_requests(self):
        return self.requests_of("stow")

    def put_requests(self):
        return self.requests_of("put")

    def delete_requests(self, partition=None):
        """Return the DELETE requests (of one partition, if given) in the order received.

        Each has Method, Path, Partition, StudyInstanceUID, SeriesInstanceUID and
        SOPInstanceUID (None for the levels the path does not name), Deleted (the SOP Instance
        UIDs removed) and Status (0 when the connection ended before the response was sent).
        """
        return [request for request in self.requests_of("delete")
                if partition is None or request["Partition"] == partition]

    def state(self):
        """Return the stored UIDs and creation counts per partition, and the requests seen."""
        with self.lock:
            return {
                "Partitions": {name: sorted(instances)
                               for name, instances in self.partitions.items()},
                "Created": {name: dict(counts) for name, counts in self.created.items()},
                "Replaced": {name: dict(counts) for name, counts in self.replaced.items()},
                "TokensIssued": self.tokens_issued,
                "Requests": list(self.requests),
            }

    # Internals used by the handler.

    def take_fault(self, kinds_of_request):
        """Take one use of the first fault whose target is one of kinds_of_request or "any"."""
        if isinstance(kinds_of_request, str):
            kinds_of_request = (kinds_of_request,)
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and (fault.target in kinds_of_request
                                            or fault.target == "any"):
                    fault.remaining -= 1
                    return fault
            return None

    def issue_token(self, audience, principal, lifetime=None):
        with self.lock:
            lifetime = self.token_lifetime if lifetime is None else lifetime
            token = Token(secrets.token_urlsafe(32), audience, principal,
                          time.time() + lifetime)
            self.tokens[token.value] = token
            self.tokens_issued += 1
            self.issued_values.append(token.value)
            return token, lifetime

    def bearer_token(self, header):
        """Return the Token of an Authorization header, or None if it has no known token."""
        if not header.startswith("Bearer "):
            return None
        with self.lock:
            return self.tokens.get(header[len("Bearer "):].strip())

    def check_bearer(self, header, audience):
        """Return None if the Authorization header carries a valid token for audience."""
        if not header.startswith("Bearer "):
            return "no bearer token"
        token = self.bearer_token(header)
        if token is None:
            return "unknown token"
        if token.audience != audience:
            return f"token for {token.audience}, not {audience}"
        if token.expires_at <= time.time():
            return "expired token"
        return None

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)

    def take_count(self, table, uid):
        """Decrement table[uid] and return True while it was positive."""
        with self.lock:
            remaining = table.get(uid, 0)
            if remaining <= 0:
                return False
            table[uid] = remaining - 1
            return True

    def store_instance(self, partition, dataset, data):
        """Store an instance; return REASON_ALREADY_EXISTS if the partition had it already."""
        uid = str(dataset.SOPInstanceUID)
        with self.lock:
            instances = self.partitions.setdefault(partition, {})
            if uid in instances:
                return REASON_ALREADY_EXISTS
            instances[uid] = describe_instance(dataset, data)
            counts = self.created.setdefault(partition, {})
            counts[uid] = counts.get(uid, 0) + 1
            return 0

    def upsert_instance(self, partition, dataset, data):
        """Store an instance, replacing any stored copy, and return True when it replaced one."""
        uid = str(dataset.SOPInstanceUID)
        with self.lock:
            instances = self.partitions.setdefault(partition, {})
            existed = uid in instances
            instances[uid] = describe_instance(dataset, data)
            counts = (self.replaced if existed else self.created).setdefault(partition, {})
            counts[uid] = counts.get(uid, 0) + 1
            return existed


def read_dataset(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def describe_instance(dataset, data):
    """Return what the fake keeps of a stored Part 10 file: UIDs, size and MD5 of its bytes."""
    return {
        "StudyInstanceUID": str(dataset.get("StudyInstanceUID", "")),
        "SeriesInstanceUID": str(dataset.get("SeriesInstanceUID", "")),
        "SOPClassUID": str(dataset.get("SOPClassUID", "")),
        "Size": len(data),
        "MD5": hashlib.md5(data).hexdigest(),
    }


def dicom_json_element(vr, values):
    return {"vr": vr, "Value": list(values)}


def sop_reference(sop_class_uid, sop_instance_uid):
    item = {}
    if sop_class_uid:
        item[TAG_REFERENCED_SOP_CLASS_UID] = dicom_json_element("UI", [sop_class_uid])
    if sop_instance_uid:
        item[TAG_REFERENCED_SOP_INSTANCE_UID] = dicom_json_element("UI", [sop_instance_uid])
    return item


def parse_content_type(value):
    message = email.message.Message()
    message["Content-Type"] = value
    parameters = {key.lower(): parameter for key, parameter in message.get_params()[1:]}
    return message.get_content_type(), parameters


def split_multipart(body, boundary):
    """Return [(headers dict with lower-case names, content)] of a multipart body.

    Raises ValueError when the body does not follow RFC 2046 (missing delimiter or headers).
    """
    delimiter = b"--" + boundary.encode("latin-1")
    if not body.startswith(delimiter):
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise ValueError("the body has no delimiter line of the boundary")
        body = body[start + 2:]
    parts = []
    position = len(delimiter)
    while True:
        if body[position:position + 2] == b"--":
            return parts
        if body[position:position + 2] != b"\r\n":
            raise ValueError("a delimiter line does not end with CRLF")
        header_end = body.find(b"\r\n\r\n", position + 2)
        if header_end < 0:
            raise ValueError("a part has no end of headers")
        headers = {}
        for line in body[position + 2:header_end].split(b"\r\n"):
            if not line:
                continue
            name, separator, value = line.decode("latin-1").partition(":")
            if not separator:
                raise ValueError(f"invalid part header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        next_delimiter = body.find(b"\r\n" + delimiter, header_end + 4)
        if next_delimiter < 0:
            raise ValueError("the last part has no closing delimiter")
        parts.append((headers, body[header_end + 4:next_delimiter]))
        position = next_delimiter + 2 + len(delimiter)


def delete_target(rest):
    """Return (study, series, instance) named by studies/{s}[/series/{se}[/instances/{i}]].

    A level that the path does not name, or names under the wrong segment, is None.
    """
    study = rest[1] if len(rest) >= 2 and rest[0] == "studies" else None
    series = rest[3] if len(rest) >= 4 and rest[2] == "series" else None
    instance = rest[5] if len(rest) == 6 and rest[4] == "instances" else None
    return study, series, instance


def parse_dicom_path(path):
    """Split /v2[/partitions/p]/studies/... into (version, partition, [segments after it])."""
    segments = [urllib.parse.unquote(segment) for segment in path.strip("/").split("/")]
    if not segments or segments[0] not in API_VERSIONS:
        return None
    version = segments[0]
    rest = segments[1:]
    partition = DEFAULT_PARTITION
    if len(rest) >= 2 and rest[0] == "partitions":
        partition = rest[1]
        rest = rest[2:]
    return version, partition, rest


def check_jwt_signature(pieces, header, certificate_path):
    """Return why an RS256 JWT is not signed by the certificate's key, or None.

    The signature is checked with the openssl command, because the standard library has no RSA.
    """
    with open(certificate_path, encoding="ascii") as certificate_file:
        pem = certificate_file.read()
    start = pem.index("-----BEGIN CERTIFICATE-----")
    end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    der = ssl.PEM_cert_to_DER_cert(pem[start:end])
    thumbprint = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
    if header.get("x5t", thumbprint) != thumbprint:
        return f"x5t {header.get('x5t')!r} is not the thumbprint {thumbprint} of the certificate"
    if header.get("alg") != "RS256":
        return f"alg {header.get('alg')!r} cannot be verified by the fake, which checks RS256"
    signature = base64.urlsafe_b64decode(pieces[2] + "=" * (-len(pieces[2]) % 4))
    with tempfile.TemporaryDirectory(prefix="fake-azure-jwt-") as directory:
        public_key = os.path.join(directory, "public.pem")
        signature_path = os.path.join(directory, "signature.bin")
        with open(signature_path, "wb") as signature_file:
            signature_file.write(signature)
        subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", certificate_path,
                        "-out", public_key], check=True, capture_output=True)
        result = subprocess.run(["openssl", "dgst", "-sha256", "-verify", public_key,
                                 "-signature", signature_path],
                                input=f"{pieces[0]}.{pieces[1]}".encode("ascii"),
                                capture_output=True)
    if result.returncode != 0:
        return "the signature does not match the certificate's public key"
    return None


def decode_jwt_part(text):
    padded = text + "=" * (-len(text) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


class QuietHTTPServer(ThreadingHTTPServer):
    """A server that does not print the TLS handshakes that clients abort.

    A client that rejects the certificate (the test without the CA) ends the handshake, which
    is expected here, so it is not printed as a traceback.
    """

    def __init__(self, *arguments, **keywords):
        super().__init__(*arguments, **keywords)
        self.connections_lock = threading.Lock()
        self.connections = set()

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)

    def add_connection(self, connection):
        with self.connections_lock:
            self.connections.add(connection)

    def remove_connection(self, connection):
        with self.connections_lock:
            self.connections.discard(connection)

    def close_connections(self):
        """Shut down the kept-open connections, as a service that went away would."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client


class FakeAzureHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAzure/1"

    @property
    def fake(self):
        return self.server.fake

    @property
    def base_url(self):
        """The URL of the server that received this request, valid after the fake stopped."""
        scheme = "https" if self.server.ssl_context is not None else "http"
        return self.fake.server_url(self.server, scheme)

    def setup(self):
        # The handshake runs here, in the request's thread, so that a client that stalls it
        # does not block the accepting thread.
        if self.server.ssl_context is not None:
            self.request.settimeout(TLS_HANDSHAKE_TIMEOUT_SECONDS)
            self.request = self.server.ssl_context.wrap_socket(self.request, server_side=True)
            self.request.settimeout(None)
        self.server.add_connection(self.request)
        super().setup()

    def finish(self):
        self.server.remove_connection(self.request)
        try:
            super().finish()
        finally:
            # The server closes the plain socket it accepted, which wrap_socket detached, so
            # the TLS socket is closed here.
            if self.server.ssl_context is not None:
                self.request.close()

    def log_message(self, format, *arguments):  # noqa: A002 - the base class names it format
        pass

    # Transport.

    def read_body(self, limit=None):
        """Read the request body (Content-Length or chunked); stop after limit bytes if set."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0") or 0)
        if limit is not None:
            length = min(length, limit)
        return self.rfile.read(length)

    def send(self, status, body=b"", content_type="text/plain; charset=utf-8", headers=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        if body or status not in (204, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.last_status = status

    def send_json(self, status, value, content_type="application/json", headers=None):
        self.send(status, json.dumps(value), content_type, headers)

    def send_replaced_response(self, fault, default_body):
        """Send the response of a "response" fault, streaming its padding in pieces of 1 MB."""
        body = default_body if fault.body is None else fault.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        length = max(fault.size, len(body))
        self.entry["ResponseReplaced"] = True
        self.send_response(fault.status)
        self.send_header("Content-Type", fault.content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.last_status = fault.status
        self.wfile.write(body)
        remaining = length - len(body)
        piece = fault.fill * RESPONSE_PIECE_BYTES
        while remaining > 0:
            self.wfile.write(piece[:remaining])
            remaining -= min(remaining, len(piece))
        self.entry["ResponseBytes"] = length

    def reset_connection(self):
        """Close the socket with RST (SO_LINGER 0), as a proxy that dies mid-request."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
        self.last_status = 0

    def apply_fault(self, kinds_of_request):
        """Apply the next planned fault; return True when it sent the response itself."""
        fault = self.fake.take_fault(kinds_of_request)
        if fault is None:
            return False
        if fault.kind == "delay":
            time.sleep(fault.seconds)
            return False
        if fault.kind == "reset":
            self.read_body(limit=int(self.headers.get("Content-Length", "0") or 0) // 2)
            self.reset_connection()
            return True
        if fault.kind == "response":
            if fault.store:
                self.response_fault = fault
                return False
            self.read_body()
            self.send_replaced_response(fault, b"{}")
            return True
        self.read_body()
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        body = fault.body or f"fault {fault.status} of the fake"
        if fault.echo_headers:
            body = f"fault {fault.status} of the fake; the request's headers:\n{self.headers}"
        self.send(fault.status, body, headers=headers)
        return True

    # Routing.

    def route(self):
        self.last_status = 0
        self.response_fault = None
        url = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(url.query)
        path = url.path
        # ClientPort lets a test tell which process sent a request, by the owner of the socket.
        entry = {"Time": time.time(), "Method": self.command, "Path": self.path, "Kind": "other",
                 "ClientPort": self.client_address[1]}
        self.entry = entry
        try:
            self.dispatch(path)
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        finally:
            entry["Status"] = self.last_status
            entry["EndTime"] = time.time()
            if not path.startswith("/_control"):
                self.fake.record(entry)

    def dispatch(self, path):
        if path.startswith("/_control"):
            return self.handle_control(path)
        if self.server.identity_only and path not in IDENTITY_PATHS:
            self.read_body()
            return self.send(404, f"no route {path} on the managed identity port; Entra ID, "
                                  "Key Vault and the DICOM service are served over HTTPS")
        if path.endswith("/oauth2/v2.0/token") and self.command == "POST":
            self.entry["Kind"] = "token"
            if not self.apply_fault("token"):
                self.handle_entra_token(path)
            return None
        if path == "/metadata/identity/oauth2/token" and self.command == "GET":
            self.entry["Kind"] = "token"
            if not self.apply_fault("token"):
                self.handle_instance_metadata()
            return None
        if path == "/msi/token" and self.command == "GET":
            self.entry["Kind"] = "token"
            if not self.apply_fault("token"):
                self.handle_app_service()
            return None
        if path.startswith("/secrets/") and self.command == "GET":
            self.entry["Kind"] = "vault"
            if not self.apply_fault("vault"):
                self.handle_vault_secret(path)
            return None
        parsed = parse_dicom_path(path)
        if parsed is None:
            self.read_body()
            return self.send(404, f"no route {path} (the API version must be one of "
                                  f"{', '.join(API_VERSIONS)})")
        return self.handle_dicom(*parsed)

    def do_GET(self):
        self.route()

    def do_POST(self):
        self.route()

    def do_DELETE(self):
        self.route()

    def do_PUT(self):
        self.route()

    # Microsoft Entra ID.

    def entra_error(self, status, error, code, description):
        self.send_json(status, {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: "
                                 f"{secrets.token_hex(8)} Timestamp: "
                                 f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        })

    def handle_entra_token(self, path):
        tenant = path.strip("/").split("/")[0]
        form = urllib.parse.parse_qs(self.read_body().decode("utf-8"))
        field = {key: values[0] for key, values in form.items()}
        self.entry["ClientId"] = field.get("client_id", "")
        if tenant != self.fake.tenant:
            return self.entra_error(400, "invalid_request", AADSTS_TENANT_NOT_FOUND,
                                    f"Tenant '{tenant}' not found.")
        if field.get("grant_type") != "client_credentials":
            return self.entra_error(400, "unsupported_grant_type", AADSTS_UNSUPPORTED_GRANT,
                                    "The grant type is not supported.")
        for name in ("client_id", "scope"):
            if not field.get(name):
                return self.entra_error(400, "invalid_request", AADSTS_MISSING_PARAMETER,
                                        f"The request body must contain the parameter "
                                        f"'{name}'.")
        scope = field["scope"]
        if not scope.endswith("/.default"):
            return self.entra_error(400, "invalid_scope", AADSTS_INVALID_SCOPE,
                                    f"The provided value '{scope}' for the input parameter "
                                    "'scope' is not valid.")
        rejection = self.check_client(field)
        if rejection is not None:
            return self.entra_error(401, "invalid_client", *rejection)
        token, lifetime = self.fake.issue_token(scope[:-len("/.default")], field["client_id"])
        self.send_json(200, {"token_type": "Bearer", "expires_in": lifetime,
                             "ext_expires_in": lifetime, "access_token": token.value})
        return None

    def check_client(self, field):
        """Return (AADSTS code, description) if the client id, secret or assertion is wrong."""
        invalid = (f"The provided client secret keys for app '{field['client_id']}' are "
                   "expired or invalid.")
        if field["client_id"] != self.fake.client_id:
            return AADSTS_INVALID_SECRET, "Invalid client secret provided. " + invalid
        if "client_assertion" in field:
            reason = self.check_assertion(field)
            if reason is not None:
                return AADSTS_INVALID_ASSERTION, f"Client assertion failed validation: {reason}."
            return None
        if field.get("client_secret") != self.fake.client_secret:
            return AADSTS_INVALID_SECRET, ("Invalid client secret provided. Ensure the secret "
                                           "being sent in the request is the client secret "
                                           "value, not the client secret ID. " + invalid)
        return None

    def check_assertion(self, field):
        """Return why a client assertion is wrong, or None.

        A federated token (workload identity) must equal the one set by set_federated_token.
        A certificate assertion must be a JWT with the claims Entra checks (aud, iss, sub,
        exp) and an x5t or x5t#S256 header. Its RS256 signature is verified only after
        set_assertion_certificate().
        """
        if field.get("client_assertion_type") != JWT_BEARER:
            return "client_assertion_type is not " + JWT_BEARER
        assertion = field["client_assertion"]
        if self.fake.federated_token is not None:
            return None if assertion == self.fake.federated_token else "unknown federated token"
        pieces = assertion.split(".")
        if len(pieces) != 3:
            return "the assertion is not a JWT of three parts"
        try:
            header = decode_jwt_part(pieces[0])
            claims = decode_jwt_part(pieces[1])
        except (ValueError, UnicodeDecodeError):
            return "the JWT header or claims are not base64url JSON"
        if header.get("alg") not in ("RS256", "PS256"):
            return f"alg {header.get('alg')!r} is not RS256 or PS256"
        if "x5t" not in header and "x5t#S256" not in header:
            return "the JWT header has no x5t or x5t#S256"
        expected_audience = f"/{self.fake.tenant}/oauth2/v2.0/token"
        if not str(claims.get("aud", "")).endswith(expected_audience):
            return f"aud {claims.get('aud')!r} does not end with {expected_audience}"
        if claims.get("iss") != self.fake.client_id or claims.get("sub") != self.fake.client_id:
            return "iss and sub must be the client id"
        if float(claims.get("exp", 0)) <= time.time():
            return "the assertion has expired"
        if self.fake.assertion_certificate is not None:
            return check_jwt_signature(pieces, header, self.fake.assertion_certificate)
        return None

    # Managed identity.

    def handle_instance_metadata(self):
        if self.headers.get("Metadata", "").lower() != "true":
            return self.send_json(400, {"error": "invalid_request",
                                        "error_description": "Required metadata header not "
                                                             "specified"})
        arc = self.fake.arc_folder is not None or self.fake.arc_key_file is not None
        api_version = self.query.get("api-version", [""])[0]
        expected_version = ARC_API_VERSION if arc else VM_API_VERSION
        if api_version != expected_version:
            return self.send_json(400, {"error": "invalid_request",
                                        "error_description": f"api-version {api_version!r} "
                                                             f"is not {expected_version}"})
        if arc:
            authorization = self.headers.get("Authorization", "")
            if not authorization.startswith("Basic "):
                key_file = (self.fake.write_arc_key_file() if self.fake.arc_folder is not None
                            else self.fake.arc_key_file)
                self.entry["ArcChallenge"] = key_file
                return self.send(401, "", headers={"WWW-Authenticate": f"Basic realm={key_file}"})
            with self.fake.lock:
                expected_key = self.fake.arc_key
                used_file = self.fake.arc_key_file if self.fake.arc_folder else None
            if authorization[len("Basic "):].strip() != expected_key:
                return self.send_json(401, {"error": "invalid_client",
                                            "error_description": "invalid Arc key"})
            # The agent's key file is good for one request, as the real agent's is.
            if used_file is not None and os.path.exists(used_file):
                os.remove(used_file)
        return self.send_managed_identity_token(expires_in_text=True)

    def handle_app_service(self):
        if self.fake.identity_header is None:
            return self.send(404, "App Service managed identity is not enabled in the fake")
        if self.headers.get("X-IDENTITY-HEADER") != self.fake.identity_header:
            return self.send_json(401, {"statusCode": 401,
                                        "message": "X-IDENTITY-HEADER is missing or wrong"})
        api_version = self.query.get("api-version", [""])[0]
        if api_version != APP_SERVICE_API_VERSION:
            return self.send_json(400, {"statusCode": 400,
                                        "message": f"api-version {api_version!r} is not "
                                                   f"{APP_SERVICE_API_VERSION}"})
        return self.send_managed_identity_token(expires_in_text=False)

    def send_managed_identity_token(self, expires_in_text):
        resource = self.query.get("resource", [""])[0].rstrip("/")
        if not resource:
            return self.send_json(400, {"error": "invalid_request",
                                        "error_description": "resource is missing"})
        client_id = self.query.get("client_id", [""])[0]
        principal = client_id or SYSTEM_ASSIGNED
        self.entry["ClientId"] = client_id
        with self.fake.lock:
            identities = self.fake.managed_identities
        if identities is not None and principal not in identities:
            return self.send_json(400, {"error": "invalid_request",
                                        "error_description": "Identity not found"})
        token, lifetime = self.fake.issue_token(resource, principal)
        answer = {"access_token": token.value, "expires_on": str(int(token.expires_at)),
                  "resource": resource, "token_type": "Bearer"}
        if expires_in_text:
            answer["expires_in"] = str(lifetime)
        return self.send_json(200, answer)

    # Key Vault.

    def send_vault_error(self, status, code, message, inner_code=None, headers=None):
        error = {"code": code, "message": message}
        if inner_code is not None:
            error["innererror"] = {"code": inner_code}
        self.entry["VaultError"] = inner_code or code
        return self.send_json(status, {"error": error}, headers=headers)

    def handle_vault_secret(self, path):
        if "api-version" not in self.query:
            return self.send_vault_error(400, "BadParameter",
                                         "The request URI contains an invalid or missing "
                                         "api-version")
        reason = self.fake.check_bearer(self.headers.get("Authorization", ""), VAULT_RESOURCE)
        if reason is not None:
            self.entry["AuthError"] = reason
            challenge = (f'Bearer authorization="{self.base_url}/{self.fake.tenant}", '
                         f'resource="{VAULT_RESOURCE}"')
            return self.send_vault_error(401, "Unauthorized", f"AKV10000: {reason}",
                                         headers={"WWW-Authenticate": challenge})
        # A token revoked since check_bearer() has no principal: the read goes on as anonymous.
        token = self.fake.bearer_token(self.headers.get("Authorization", ""))
        principal = token.principal if token is not None else ""
        self.entry["Principal"] = principal
        segments = [urllib.parse.unquote(part) for part in path.strip("/").split("/")]
        name = segments[1] if len(segments) > 1 else ""
        requested_version = segments[2] if len(segments) > 2 else ""
        with self.fake.lock:
            forbidden = principal in self.fake.vault_forbidden
            versions = [dict(version) for version in self.fake.vault_secrets.get(name, [])]
        if forbidden:
            return self.send_vault_error(
                403, "Forbidden",
                "Caller is not authorized to perform action on resource.\r\nIf role "
                "assignments, deny assignments or role definitions were changed recently, "
                f"please observe propagation time.\r\nCaller: appid={principal}\r\nAction: "
                "'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nAssignment: "
                "(not found)\r\n", "ForbiddenByRbac")
        chosen = None
        for version in versions:
            if not requested_version or version["version"] == requested_version:
                chosen = version
        if chosen is None:
            return self.send_vault_error(
                404, "SecretNotFound",
                f"A secret with (name/id) {name}/{requested_version} was not found in this "
                "key vault. If you recently deleted this secret you may be able to recover it "
                "using the correct recovery command.")
        self.entry["Version"] = chosen["version"]
        if not chosen["enabled"]:
            return self.send_vault_error(403, "Forbidden",
                                         "Operation get is not allowed on a disabled secret.",
                                         "SecretDisabled")
        attributes = {"enabled": True, "created": chosen["created"],
                      "updated": chosen["created"], "recoveryLevel": "Recoverable+Purgeable",
                      "recoverableDays": 90}
        if chosen["exp"] is not None:
            attributes["exp"] = chosen["exp"]
        answer = {"value": chosen["value"],
                  "id": f"{self.base_url}/secrets/{name}/{chosen['version']}",
                  "attributes": attributes, "tags": {}}
        if chosen["contentType"] is not None:
            answer["contentType"] = chosen["contentType"]
        return self.send_json(200, answer)

    # DICOM service.

    def handle_dicom(self, version, partition, rest):
        kind = DICOM_REQUEST_KINDS.get(self.command, "dicom")
        self.entry["Kind"] = kind
        self.entry["Partition"] = partition
        if kind == "delete":
            # Recorded before any fault, so that a test can check which resource each DELETE named.
            study, series, instance = delete_target(rest)
            self.entry.update({"StudyInstanceUID": study, "SeriesInstanceUID": series,
                               "SOPInstanceUID": instance, "Deleted": []})
        # A "dicom" fault applies to every DICOM request but a STOW-RS POST.
        if self.apply_fault((kind,) if kind in ("stow", "dicom") else (kind, "dicom")):
            return None
        if self.fake.require_auth:
            reason = self.fake.check_bearer(self.headers.get("Authorization", ""),
                                            DICOM_RESOURCE)
            if reason is not None:
                self.read_body()
                self.entry["AuthError"] = reason
                return self.send(401, f"Unauthorized: {reason}",
                                 headers={"WWW-Authenticate": "Bearer"})
        if not rest or rest[0] != "studies":
            self.read_body()
            return self.send(404, f"no DICOM route {'/'.join(rest)}")
        if self.command == "POST" and len(rest) <= 2:
            return self.handle_stow(version, partition, rest[1] if len(rest) == 2 else "")
        if self.command == "PUT" and len(rest) <= 2:
            if version != "v2":
                self.read_body()
                return self.send(405, f"PUT (upsert) is not supported in API {version}; it "
                                      "needs API v2.")
            return self.handle_stow(version, partition, rest[1] if len(rest) == 2 else "",
                                    upsert=True)
        if self.command == "GET" and len(rest) == 1:
            return self.handle_qido_studies(partition)
        if self.command == "DELETE" and len(rest) in (2, 4, 6):
            return self.handle_delete(partition, rest)
        self.read_body()
        return self.send(405, f"{self.command} is not supported on {'/'.join(rest)}")

    def handle_stow(self, version, partition, study_in_url, upsert=False):
        """Store the parts of a STOW-RS request; with upsert (PUT), replace stored copies.

        The upsert follows the Azure DICOM service's conformance statement v2, section Store
        (STOW-RS): PUT ../studies[/{study}] replaces the existing data with the data received,
        so it never fails with 45070.
        """
        limit = self.fake.max_body_bytes
        body = self.read_body()
        self.entry["Bytes"] = len(body)
        if self.fake.delay_seconds:
            time.sleep(self.fake.delay_seconds)
        if limit and len(body) > limit:
            return self.send(413, f"The request of {len(body)} bytes exceeds the limit of "
                                  f"{limit} bytes.")
        media_type, parameters = parse_content_type(self.headers.get("Content-Type", ""))
        if media_type != "multipart/related" or parameters.get("type") != DICOM_PART:
            return self.send(415, f"The content type '{self.headers.get('Content-Type')}' is "
                                  "not supported; expected multipart/related; "
                                  'type="application/dicom".')
        if "start" in parameters:
            return self.send(400, "The start parameter of multipart/related is not supported.")
        if not parameters.get("boundary"):
            return self.send(400, "The multipart/related content type has no boundary.")
        try:
            parts = split_multipart(body, parameters["boundary"])
        except ValueError as error:
            return self.send(400, f"The multipart body is invalid: {error}.")
        if not parts:
            return self.send(400, "The multipart body has no part.")
        for headers, _ in parts:
            if headers.get("content-type", "") != DICOM_PART:
                return self.send(415, f"The part content type '{headers.get('content-type')}' "
                                      "is not supported; expected application/dicom.")
        return self.store_parts(version, partition, study_in_url, parts, upsert)

    def store_parts(self, version, partition, study_in_url, parts, upsert):
        referenced = []
        failed = []
        outcomes = {}
        studies = set()
        warned = False
        for _, content in parts:
            outcome = self.store_part(version, partition, study_in_url, content, upsert)
            uid, sop_class, study, reason, warning, dropped, replaced = outcome
            if dropped:
                label = "Dropped"
            elif reason:
                label = reason
            else:
                label = "Replaced" if replaced else "Stored"
            outcomes[uid or f"(unreadable part {len(outcomes)})"] = label
            if dropped:
                continue
            item = sop_reference(sop_class, uid)
            if reason:
                item[TAG_FAILURE_REASON] = dicom_json_element("US", [reason])
                failed.append(item)
                continue
            studies.add(study)
            item[TAG_RETRIEVE_URL] = dicom_json_element("UR", [
                f"{self.base_url}/{version}/studies/{study}/instances/{uid}"])
            if warning:
                item[TAG_WARNING_REASON] = dicom_json_element("US", [warning])
                warned = True
            referenced.append(item)
        self.entry["Instances"] = outcomes

        answer = {}
        if len(studies) == 1:
            answer[TAG_RETRIEVE_URL] = dicom_json_element(
                "UR", [f"{self.base_url}/{version}/studies/{next(iter(studies))}"])
        if failed:
            answer[TAG_FAILED_SOP_SEQUENCE] = dicom_json_element("SQ", failed)
        if referenced:
            answer[TAG_REFERENCED_SOP_SEQUENCE] = dicom_json_element("SQ", referenced)
        if failed and not referenced:
            status = 409
        elif failed or warned:
            status = 202
        else:
            status = 200
        if self.response_fault is not None:
            return self.send_replaced_response(self.response_fault, json.dumps(answer).encode("utf-8"))
        return self.send_json(status, answer, content_type=DICOM_JSON)

    def store_part(self, version, partition, study_in_url, content, upsert):
        """Store one part.

        Returns (uid, class, study, failure reason, warning, dropped, replaced), where replaced
        is True when an upsert replaced a stored copy.
        """
        try:
            dataset = read_dataset(content)
        except Exception:  # pydicom raises many types for data that is not DICOM
            return "", "", "", REASON_VALIDATION_FAILED, 0, False, False
        uid = str(dataset.get("SOPInstanceUID", "") or "")
        sop_class = str(dataset.get("SOPClassUID", "") or "")
        study = str(dataset.get("StudyInstanceUID", "") or "")
        fake = self.fake
        if fake.take_count(fake.processing_failures, uid):
            return uid, sop_class, study, REASON_PROCESSING_FAILURE, 0, False, False
        if fake.take_count(fake.being_created, uid):
            return uid, sop_class, study, REASON_BEING_CREATED, 0, False, False
        if not self.is_valid(dataset):
            return uid, sop_class, study, REASON_VALIDATION_FAILED, 0, False, False
        if study_in_url and study != study_in_url:
            return uid, sop_class, study, REASON_STUDY_UID_MISMATCH, 0, False, False
        dropped = fake.take_count(fake.dropped, uid)
        if dropped and not fake.store_dropped:
            return uid, sop_class, study, 0, 0, True, False
        replaced = False
        if upsert:
            replaced = fake.upsert_instance(partition, dataset, content)
            reason = 0
        else:
            reason = fake.store_instance(partition, dataset, content)
        with fake.lock:
            warning = fake.warnings.get(uid, 0) if version == "v2" and not reason else 0
        return uid, sop_class, study, reason, warning, dropped, replaced

    def is_valid(self, dataset):
        for keyword in REQUIRED_ATTRIBUTES:
            if not str(dataset.get(keyword, "") or ""):
                return False
        if "PatientID" not in dataset:
            return not self.fake.require_patient_id
        return str(dataset.PatientID or "") not in self.fake.invalid_patient_ids

    def handle_qido_studies(self, partition):
        with self.fake.lock:
            studies = sorted({instance["StudyInstanceUID"] for instance in
                              self.fake.partitions.get(partition, {}).values()})
        limit = int(self.query.get("limit", ["100"])[0])
        offset = int(self.query.get("offset", ["0"])[0])
        answer = [{TAG_STUDY_INSTANCE_UID: dicom_json_element("UI", [study])}
                  for study in studies[offset:offset + limit]]
        if not answer:
            return self.send(204)
        return self.send_json(200, answer, content_type=DICOM_JSON)

    def handle_delete(self, partition, rest):
        """DELETE studies/{s}[/series/{se}[/instances/{i}]]: 204, or 404 if nothing matched."""
        self.read_body()
        study, series, instance = delete_target(rest)
        if (len(rest) >= 4 and series is None) or (len(rest) == 6 and instance is None):
            return self.send(404, f"no DICOM route {'/'.join(rest)}")
        with self.fake.lock:
            instances = self.fake.partitions.get(partition, {})
            doomed = [uid for uid, value in instances.items()
                      if value["StudyInstanceUID"] == study
                      and (series is None or value["SeriesInstanceUID"] == series)
                      and (instance is None or uid == instance)]
            for uid in doomed:
                del instances[uid]
        self.entry["Deleted"] = doomed
        if not doomed:
            return self.send(404, "The specified resource was not found.")
        return self.send(204)

    # Control API.

    def handle_control(self, path):
        if path == "/_control/state" and self.command == "GET":
            return self.send_json(200, self.fake.state())
        if path != "/_control" or self.command != "POST":
            return self.send(404, f"no control route {self.command} {path}")
        try:
            command = json.loads(self.read_body() or b"{}")
            result = run_control_action(self.fake, command)
        except (ValueError, TypeError, KeyError) as error:
            return self.send_json(400, {"Message": str(error)})
        return self.send_json(200, {"Result": result})


# Kinds of the recorded DICOM requests by HTTP method. Other methods are "dicom".
DICOM_REQUEST_KINDS = {"POST": "stow", "PUT": "put", "DELETE": "delete"}


# Control actions of POST /_control: the JSON keys besides "Action" are the method's arguments,
# in PascalCase ({"Action": "FailNext", "Status": 429, "Count": 3, "RetryAfter": 1}).
CONTROL_ACTIONS = {
    "Reset": "reset",
    "FailNext": "fail_next",
    "ResetNext": "reset_next",
    "DelayNext": "delay_next",
    "ReplaceResponseNext": "replace_response_next",
    "ClearFaults": "clear_faults",
    "SetMaxBodyBytes": "set_max_body_bytes",
    "SetDelay": "set_delay",
    "SetBeingCreated": "set_being_created",
    "SetProcessingFailure": "set_processing_failure",
    "SetDropped": "set_dropped",
    "SetWarning": "set_warning",
    "SetInvalidPatientIds": "set_invalid_patient_ids",
    "SetTokenLifetime": "set_token_lifetime",
    "SetClientSecret": "set_client_secret",
    "RevokeTokens": "revoke_tokens",
    "SetFederatedToken": "set_federated_token",
    "SetAssertionCertificate": "set_assertion_certificate",
    "SetIdentityHeader": "set_identity_header",
    "SetArcKeyFile": "set_arc_key_file",
    "SetVaultSecret": "set_vault_secret",
    "SetVaultSecretEnabled": "set_vault_secret_enabled",
    "DeleteVaultSecret": "delete_vault_secret",
    "SetVaultForbidden": "set_vault_forbidden",
    "SetManagedIdentities": "set_managed_identities",
}


def snake_case(name):
    return "".join("_" + letter.lower() if letter.isupper() else letter
                   for letter in name).lstrip("_")


def run_control_action(fake, command):
    """Run {"Action": name, Argument: value...} on fake; raise ValueError for a bad command."""
    if not isinstance(command, dict) or "Action" not in command:
        raise ValueError('expected a JSON object with "Action"')
    action = command["Action"]
    if action not in CONTROL_ACTIONS:
        raise ValueError(f"unknown action {action!r}, expected one of "
                         f"{', '.join(sorted(CONTROL_ACTIONS))}")
    arguments = {snake_case(key): value for key, value in command.items() if key != "Action"}
    return getattr(fake, CONTROL_ACTIONS[action])(**arguments)


def main():
    parser = argparse.ArgumentParser(description="Serve a fake of the Azure endpoints "
                                                 "(Entra ID, DICOM service, Key Vault) on "
                                                 "loopback.")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", choices=LOOPBACK_HOSTS,
                        help="loopback address to listen on")
    parser.add_argument("--tenant", default=DEFAULT_TENANT, help="tenant id of the token route")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="accepted client id")
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET,
                        help="accepted client secret")
    parser.add_argument("--token-lifetime", type=int, default=DEFAULT_TOKEN_LIFETIME_SECONDS,
                        help="lifetime of issued tokens, in seconds")
    parser.add_argument("--no-auth", action="store_true",
                        help="accept DICOM requests without a bearer token")
    parser.add_argument("--certificate", help="PEM certificate chain: serve HTTPS with it")
    parser.add_argument("--key", help="PEM private key of --certificate")
    options = parser.parse_args()
    if bool(options.certificate) != bool(options.key):
        parser.error("--certificate and --key go together")

    tls_files = (options.certificate, options.key) if options.certificate else None
    fake = FakeAzure(port=options.port, host=options.host, tenant=options.tenant,
                     client_id=options.client_id, client_secret=options.client_secret,
                     require_auth=not options.no_auth, token_lifetime=options.token_lifetime,
                     tls_files=tls_files)
    # The server threads inherit the blocked mask, so only sigwait() receives the signals.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    fake.start()
    print(f"fake Azure endpoints listening on {fake.url} (tenant {fake.tenant}), managed "
          f"identity on {fake.identity_url}", flush=True)
    signal.sigwait(stop_signals)
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
