"""The shared end check of the fault tests (test_faults_*.py), their uploader and summary.

Every fault test ends with FaultTestCase.assert_mirror_consistent. It checks that the SOP
Instance UIDs in Orthanc are the ones the fake stores in the partition and that the fake
created none of them twice. The status counts must agree with both: Mirrored + AlreadyPresent
is the number of instances, and nothing is Failed, Pending or Sending.
"""

import collections
import sys
import threading
import unittest

import requests

import fake_azure
import harness

# Long enough for retries with Retry.MaxDelaySeconds 2 and for the leases of items that were
# Sending when Orthanc was killed (LeaseSeconds 8 in test_faults_crash.py).
DRAIN_TIMEOUT_SECONDS = 180

# Totals over the tests of one script, printed by main(). "cases" counts the test methods and
# the rows of their tables of cases, "instances checked" sums the instances of every end check.
SUMMARY = collections.Counter()


def fault_section(fake, **settings):
    """Return an "AzureDicom" section for the fake, API v2, with short timeouts and leases."""
    values = {"RequestTimeoutSeconds": 5, "LeaseSeconds": 10}
    values.update(settings)
    return harness.azure_section(fake.url, "v2", **values)


def client_secret_credentials(fake, **settings):
    """Return Credentials of type ClientSecret against the fake's Entra ID route."""
    credentials = {"Type": "ClientSecret", "TenantId": fake.tenant, "ClientId": fake.client_id,
                   "ClientSecret": fake.client_secret, "AuthorityHost": fake.url}
    credentials.update(settings)
    return credentials


class Uploader(threading.Thread):
    """Upload instances in the background, one by one, until done or until Orthanc fails."""

    def __init__(self, url, instances, interval=0.0):
        super().__init__(daemon=True)
        self.url = url
        self.instances = list(instances)
        self.interval = interval
        self.stored = []  # SOP Instance UIDs that Orthanc accepted, in order
        self.error = None
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def stored_count(self):
        with self.lock:
            return len(self.stored)

    def stop(self):
        self.stop_event.set()

    def run(self):
        with requests.Session() as session:
            for data in self.instances:
                if self.stop_event.is_set():
                    return
                try:
                    response = session.post(self.url + "/instances", data=data,
                                            headers={"Content-Type": "application/dicom"},
                                            timeout=harness.REQUEST_TIMEOUT_SECONDS)
                except requests.RequestException as error:
                    self.error = repr(error)
                    return
                if response.status_code != 200:
                    self.error = f"POST /instances returned {response.status_code}"
                    return
                with self.lock:
                    self.stored.append(harness.sop_uid_of(data))
                if self.interval:
                    self.stop_event.wait(self.interval)


class FaultTestCase(harness.OrthancTestCase):
    """A test with a fake Azure DICOM service and the shared end check."""

    require_auth = False

    def setUp(self):
        super().setUp()
        self.fake = fake_azure.FakeAzure(require_auth=self.require_auth).start()
        self.addCleanup(self.stop_fake)
        SUMMARY["cases"] += 1

    def stop_fake(self):
        if self.fake.server is not None:
            self.fake.stop()

    def start_source(self, section, name="source", environment=None, plugins=None):
        source = harness.source_orthanc(self.path(name), section, name=name,
                                        environment=environment, plugins=plugins)
        return self.add_orthanc(source).start()

    def upload_study(self, source, series=1, per_series=4, size=2048):
        """Upload one generated study; return the SOP Instance UIDs."""
        instances = harness.make_study(series, per_series, size)
        harness.upload_all(source, instances)
        return [harness.sop_uid_of(data) for data in instances]

    def items_by_uid(self, source):
        return {item["SOPInstanceUID"]: item for item in harness.list_outbox(source)}

    def count_case(self):
        """Count a row of a table of cases, on top of the test method itself."""
        SUMMARY["cases"] += 1

    def count_crash(self):
        SUMMARY["crashes survived"] += 1

    def count_bad_response(self):
        SUMMARY["bad responses tried"] += 1

    def assert_mirror_consistent(self, source, partition=fake_azure.DEFAULT_PARTITION,
                                 timeout=DRAIN_TIMEOUT_SECONDS):
        """Wait for the outbox to drain, then check Orthanc, the fake and the status agree."""
        orthanc_uids = harness.list_sop_uids(source)
        status = source.wait_mirror_idle(timeout, expected_total=len(orthanc_uids))
        counts = status["Counts"]
        stored = self.fake.stored_uids(partition)
        created = self.fake.creation_counts(partition)

        self.assertEqual(sorted(orthanc_uids - stored), [], "instances missing at the service")
        self.assertEqual(sorted(stored - orthanc_uids), [],
                         "instances at the service that Orthanc does not have")
        created_twice = sorted(uid for uid, count in created.items() if count > 1)
        self.assertEqual(created_twice, [], "instances created twice at the service")
        self.assertEqual(counts["Mirrored"] + counts["AlreadyPresent"], len(orthanc_uids),
                         counts)
        self.assertEqual(counts["Failed"], 0, counts)
        self.assertEqual(counts.get("Pending", 0), 0, counts)
        self.assertEqual(counts.get("Sending", 0), 0, counts)

        items = harness.list_outbox(source)
        self.assertEqual({item["SOPInstanceUID"] for item in items}, orthanc_uids)
        for item in items:
            if item["State"] == "Mirrored":
                self.assertEqual(created.get(item["SOPInstanceUID"]), 1,
                                 f"Mirrored but not created once at the service: {item}")
        SUMMARY["instances checked"] += len(orthanc_uids)
        return status


def main():
    """Run the calling script's tests, print the summary line and exit 0 only on success."""
    program = unittest.main(exit=False, verbosity=2)
    result = program.result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed - len(result.skipped)} passed, {failed} failed, "
          f"{len(result.skipped)} skipped")
    print(f"summary: {SUMMARY['cases']} cases, {SUMMARY['crashes survived']} crashes "
          f"survived, {SUMMARY['instances checked']} instances checked, "
          f"{SUMMARY['bad responses tried']} bad responses tried", flush=True)
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
