"""Send the plugin STOW-RS responses that the service should never send, one case at a time.

The fake stores the instances (or not) and replaces its response with invalid JSON, a body
without the sequences, the wrong content type, a list that leaves instances out, or a body of
hundreds of MB. An instance that a response does not confirm must be sent again, so it ends
AlreadyPresent when the fake had stored it and Mirrored otherwise. Nothing may be marked
Mirrored that the fake did not store, and Orthanc must keep running.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import fault_checks  # noqa: E402
import harness  # noqa: E402

HUGE_BODY_BYTES = 300 * 1024 * 1024
INSTANCES_PER_CASE = 3
MIRRORED = {"Mirrored"}
ALREADY_PRESENT = {"AlreadyPresent"}
# The plugin keeps the first 16 MB of a response body (HttpClient.h). A valid response that
# is longer may be read as confirming the instances, or as unreadable. In the second case the
# instances are sent again and end AlreadyPresent.
EITHER = MIRRORED | ALREADY_PRESENT

# (name, arguments of FakeAzure.replace_response_next, states allowed for the case's
# instances). Every case takes the response to one request.
REPLACED_RESPONSES = [
    ("invalid JSON, stored",
     {"body": b"{\"00081199\": {\"vr\": \"SQ\", \"Value\": [", "store": True}, ALREADY_PRESENT),
    ("invalid JSON, not stored",
     {"body": b"<<not json>>", "store": False}, MIRRORED),
    ("no sequences, stored",
     {"body": b"{}", "store": True}, ALREADY_PRESENT),
    ("sequence of wrong VR, stored",
     {"body": b"{\"00081199\": {\"vr\": \"UI\", \"Value\": [\"1.2.3\"]}}", "store": True},
     ALREADY_PRESENT),
    ("HTML page, stored",
     {"body": b"<html><body>Service Unavailable</body></html>", "content_type": "text/html",
      "store": True}, ALREADY_PRESENT),
    ("DICOM JSON as text/plain, stored",
     {"content_type": "text/plain", "store": True}, EITHER),
    ("empty content type, stored",
     {"content_type": "", "store": True}, EITHER),
    ("202 with invalid JSON, stored",
     {"status": 202, "body": b"[1, 2", "store": True}, ALREADY_PRESENT),
    ("409 with invalid JSON, stored",
     {"status": 409, "body": b"{\"00081198\"", "store": True}, ALREADY_PRESENT),
    ("200 with an empty body, stored",
     {"body": b"", "store": True}, ALREADY_PRESENT),
    ("300 MB of spaces after the JSON",
     {"size": HUGE_BODY_BYTES, "fill": b" ", "store": True}, EITHER),
    ("300 MB of garbage after the JSON",
     {"size": HUGE_BODY_BYTES, "fill": b"x", "store": True}, ALREADY_PRESENT),
    ("300 MB of nested arrays",
     {"body": b"", "size": HUGE_BODY_BYTES, "fill": b"[", "store": True}, ALREADY_PRESENT),
    ("300 MB of text/plain, not stored",
     {"body": b"", "size": HUGE_BODY_BYTES, "fill": b"a", "content_type": "text/plain",
      "store": False}, MIRRORED),
]


class ResponseFaultsTest(fault_checks.FaultTestCase):
    def start_one_worker(self):
        # One worker and one request per study, so that each case's fault takes the response
        # to that study's request.
        section = fault_checks.fault_section(self.fake, Workers=1,
                                             MaxInstancesPerRequest=INSTANCES_PER_CASE,
                                             RequestTimeoutSeconds=60, LeaseSeconds=90)
        return self.start_source(section)

    def replaced_count(self):
        return sum(1 for request in self.fake.stow_requests()
                   if request.get("ResponseReplaced"))

    def test_replaced_responses(self):
        source = self.start_one_worker()
        for name, arguments, allowed in REPLACED_RESPONSES:
            with self.subTest(name):
                replaced_before = self.replaced_count()
                self.fake.replace_response_next(**arguments)
                uids = self.upload_study(source, per_series=INSTANCES_PER_CASE)
                self.assert_mirror_consistent(source)
                self.count_case()
                self.count_bad_response()

                self.assertTrue(source.is_running(), f"Orthanc ended after the case {name}")
                self.assertEqual(self.replaced_count(), replaced_before + 1,
                                 f"the replaced response of {name} was not sent")
                items = self.items_by_uid(source)
                for uid in uids:
                    self.assertIn(items[uid]["State"], allowed, items[uid])
                print(f"{name}: {sorted({items[uid]['State'] for uid in uids})}", flush=True)

    def test_fewer_instances_listed(self):
        source = self.start_one_worker()
        for store in (False, True):
            with self.subTest(store=store):
                instances = harness.make_study(1, INSTANCES_PER_CASE)
                dropped = harness.sop_uid_of(instances[1])
                self.fake.set_dropped([dropped], count=1, store=store)
                harness.upload_all(source, instances)
                self.assert_mirror_consistent(source)
                self.count_case()
                self.count_bad_response()

                items = self.items_by_uid(source)
                expected = "AlreadyPresent" if store else "Mirrored"
                self.assertEqual(items[dropped]["State"], expected, items[dropped])
                self.assertEqual(items[dropped]["Attempts"], 2, items[dropped])
                for data in instances:
                    uid = harness.sop_uid_of(data)
                    if uid != dropped:
                        self.assertEqual(items[uid]["State"], "Mirrored", items[uid])
                sent = [request for request in self.fake.stow_requests()
                        if dropped in request.get("Instances", {})]
                self.assertEqual(len(sent), 2, sent)
        self.assertEqual(self.fake.creation_counts(fake_azure.DEFAULT_PARTITION).get(dropped), 1)


if __name__ == "__main__":
    fault_checks.main()
