"""Mirror through a target that is down, throttles, fails, resets connections or stalls.

Each test uploads studies while the fake misbehaves, lets it recover, and ends with the
shared check of fault_checks: Orthanc, the fake and the status agree, and no instance was
created twice.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fault_checks  # noqa: E402
import harness  # noqa: E402

# Retry.MaxDelaySeconds of harness.azure_section; every outage below lasts longer.
MAX_DELAY_SECONDS = 2
OUTAGE_SECONDS = 3 * MAX_DELAY_SECONDS
STATE_TIMEOUT_SECONDS = 30
REQUEST_TIMEOUT_SECONDS = 2
RETRY_AFTER_SECONDS = 1


class NetworkFaultsTest(fault_checks.FaultTestCase):
    def wait_state(self, source, state):
        return harness.wait_for(lambda: source.status()["State"] == state,
                                STATE_TIMEOUT_SECONDS, f"status State {state}",
                                describe_state=source.status, interval=0.05)

    def test_target_stopped_then_back(self):
        source = self.start_source(fault_checks.fault_section(self.fake))
        uids = self.upload_study(source, per_series=3)
        self.assert_mirror_consistent(source)

        port = self.fake.port
        self.fake.stop()
        self.fake.requested_port = port
        stopped_at = time.monotonic()
        uids += self.upload_study(source, series=2, per_series=5)
        self.wait_state(source, "Waiting")
        status = source.status()
        self.assertTrue(status["LastError"], status)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        self.assertEqual(source.counts()["Failed"], 0)

        self.fake.start()
        self.assertEqual(self.fake.port, port)
        status = self.assert_mirror_consistent(source)
        self.assertEqual(status["State"], "Running", status)
        self.assertEqual(harness.list_sop_uids(source), set(uids))

    def test_503_longer_than_max_delay(self):
        source = self.start_source(fault_checks.fault_section(self.fake))
        self.fake.fail_next(503, count=1000)
        failing_since = time.monotonic()
        self.upload_study(source, series=2, per_series=5)
        self.wait_state(source, "Waiting")
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - failing_since)))
        refused = [request for request in self.fake.stow_requests() if request["Status"] == 503]
        # With backoff capped at MaxDelaySeconds, the plugin keeps trying during the outage.
        self.assertGreaterEqual(len(refused), 3, refused)
        self.assertEqual(source.counts()["Failed"], 0)

        self.fake.clear_faults()
        self.assert_mirror_consistent(source)
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["State"], "Mirrored", item)

    def test_429_storm_retry_after(self):
        source = self.start_source(fault_checks.fault_section(self.fake, Workers=4,
                                                              MaxInstancesPerRequest=5))
        self.fake.fail_next(429, count=12, retry_after=RETRY_AFTER_SECONDS)
        self.upload_study(source, series=4, per_series=10)
        self.wait_state(source, "Waiting")
        self.assert_mirror_consistent(source)

        statuses = [request["Status"] for request in self.fake.stow_requests()]
        self.assertEqual(statuses.count(429), 12, statuses)
        times = [request["Time"] for request in self.fake.stow_requests()
                 if request["Status"] == 429]
        # All workers wait for Retry-After, so the 12 refusals take at least that long.
        self.assertGreaterEqual(times[-1] - times[0], RETRY_AFTER_SECONDS, times)
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["Attempts"], 1, item)

    def test_500_and_503_bursts(self):
        source = self.start_source(fault_checks.fault_section(self.fake, Workers=3,
                                                              MaxInstancesPerRequest=4))
        for status in (500, 503, 500, 503):
            self.fake.fail_next(status, count=4)
        uploader = fault_checks.Uploader(source.url, harness.make_study(3, 8), interval=0.02)
        uploader.run()
        self.assertIsNone(uploader.error)
        self.assert_mirror_consistent(source)

        statuses = [request["Status"] for request in self.fake.stow_requests()]
        self.assertEqual(statuses.count(500), 8, statuses)
        self.assertEqual(statuses.count(503), 8, statuses)
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["State"], "Mirrored", item)

    def test_reset_during_request_body(self):
        source = self.start_source(fault_checks.fault_section(self.fake, Workers=2,
                                                              MaxInstancesPerRequest=4))
        self.fake.reset_next(count=6)
        self.upload_study(source, series=2, per_series=6, size=64 * 1024)
        self.assert_mirror_consistent(source)

        resets = [request for request in self.fake.stow_requests() if request["Status"] == 0]
        self.assertEqual(len(resets), 6, resets)
        # The fake stores nothing of a request that it resets, so every item is Mirrored.
        for item in self.items_by_uid(source).values():
            self.assertEqual(item["State"], "Mirrored", item)

    def test_stalled_target_times_out(self):
        section = fault_checks.fault_section(self.fake, Workers=1, MaxInstancesPerRequest=5,
                                             RequestTimeoutSeconds=REQUEST_TIMEOUT_SECONDS,
                                             LeaseSeconds=REQUEST_TIMEOUT_SECONDS + 3)
        source = self.start_source(section)
        stall_seconds = 3 * REQUEST_TIMEOUT_SECONDS
        self.fake.delay_next(stall_seconds, count=2)
        started = time.monotonic()
        self.upload_study(source, per_series=10)
        # The fake handles a stalled request after its delay, so it stores those instances
        # after the plugin gave up: they are sent again and end AlreadyPresent or Mirrored.
        time.sleep(stall_seconds + 1)
        self.assert_mirror_consistent(source)
        self.assertGreaterEqual(time.monotonic() - started, stall_seconds)

        status = source.status()
        self.assertTrue(status["LastError"], status)
        # The second stalled request may still be in its delay when the outbox drains.
        harness.wait_for(lambda: len(self.stalled_requests(stall_seconds)) == 2,
                         stall_seconds + STATE_TIMEOUT_SECONDS, "two stalled requests to end",
                         describe_state=self.fake.stow_requests)
        self.assert_mirror_consistent(source)

    def stalled_requests(self, seconds):
        return [request for request in self.fake.stow_requests()
                if request["EndTime"] - request["Time"] >= seconds]


if __name__ == "__main__":
    fault_checks.main()
