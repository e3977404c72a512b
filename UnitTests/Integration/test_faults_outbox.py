"""Mirror while another process locks the outbox database, and while its disk is full.

The full disk is a tmpfs mounted by the test in a mount namespace of its own: run as root,
the script starts itself again under `unshare --mount --propagation private`, so the mount
ends with the script and stays out of every other process's mount table. Each test ends with the shared check of
fault_checks.
"""

import errno
import os
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fault_checks  # noqa: E402
import harness  # noqa: E402

# Set in the environment of the script once it runs in its own mount namespace.
MOUNT_NAMESPACE_VARIABLE = "AZURE_DICOM_TEST_MOUNT_NAMESPACE"
OUTBOX_FS_BYTES = 4 * 1024 * 1024
# Three times the plugin's SQLite busy timeout (5 s in Outbox.cpp), so that the change
# follower gives up while the lock is still held.
LOCK_SECONDS = 15
STATE_TIMEOUT_SECONDS = 60
FILL_PIECES = (1024 * 1024, 64 * 1024, 4096, 512)
ROOT_REASON = "mounting a tmpfs needs root"


def in_own_mount_namespace():
    return os.environ.get(MOUNT_NAMESPACE_VARIABLE) == "1"


def fill_file_system(path):
    """Write zeros to path until the file system is full; return the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as filler:
        for size in FILL_PIECES:
            piece = bytes(size)
            while True:
                try:
                    filler.write(piece)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
                written += size
    return written


class ExclusiveLock(threading.Thread):
    """Hold BEGIN EXCLUSIVE on a SQLite database for some seconds, from another connection."""

    def __init__(self, path, seconds):
        super().__init__(daemon=True)
        self.path = path
        self.seconds = seconds
        self.locked = threading.Event()
        self.error = None

    def run(self):
        connection = sqlite3.connect(self.path, timeout=STATE_TIMEOUT_SECONDS,
                                     isolation_level=None)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            self.locked.set()
            time.sleep(self.seconds)
            connection.execute("ROLLBACK")
        except sqlite3.Error as error:
            self.error = repr(error)
        finally:
            connection.close()


class OutboxFaultsTest(fault_checks.FaultTestCase):
    def test_database_locked_exclusive(self):
        database = self.path("outbox.db")
        source = self.start_source(fault_checks.fault_section(self.fake, Database=database))
        self.upload_study(source, per_series=3)
        self.assert_mirror_consistent(source)

        lock = ExclusiveLock(database, LOCK_SECONDS)
        lock.start()
        self.assertTrue(lock.locked.wait(STATE_TIMEOUT_SECONDS), lock.error)
        locked_at = time.monotonic()
        uploader = fault_checks.Uploader(source.url, harness.make_study(2, 10), interval=0.05)
        uploader.start()
        # The plugin reports the lock while Orthanc goes on serving and storing instances.
        self.assertEqual(source.get("/system").status_code, 200)
        latencies = []
        # NOTE: while the lock is held and instances arrive, each GET /azure-dicom/status waits
        # for the outbox up to about twice the busy timeout, so the report may come only as the
        # lock ends. LastError keeps the follower's error after it recovers for that reason.
        status = harness.wait_for(
            lambda: self.outbox_error_contains(source, "SQLITE_BUSY", latencies),
            LOCK_SECONDS + STATE_TIMEOUT_SECONDS, "the status to report the locked outbox",
            describe_state=source.status)
        print(f"GET /azure-dicom/status took up to {max(latencies):.1f} s during the lock, "
              f"the report came after {time.monotonic() - locked_at:.1f} s", flush=True)
        print(f"status during the lock: State {status['State']}, LastError "
              f"{status['LastError']}, Follower {status['Follower']}", flush=True)
        uploader.join(timeout=STATE_TIMEOUT_SECONDS)
        self.assertIsNone(uploader.error)
        lock.join(timeout=STATE_TIMEOUT_SECONDS)
        self.assertIsNone(lock.error)
        self.assertTrue(source.is_running())

        self.assert_mirror_consistent(source)
        self.assertFalse(source.status()["Follower"]["LastError"])

    def outbox_error_contains(self, source, text, latencies):
        """Return the status if LastError or Follower.LastError contains text.

        Appends the seconds that the status request took to latencies.
        """
        # NOTE: a status request can wait for the outbox for seconds, and the follower's error
        # can end before any status shows it in Follower.LastError. LastError keeps the last
        # error of the follower or the workers after they recover, so either field counts.
        started = time.monotonic()
        status = source.status()
        latencies.append(time.monotonic() - started)
        message = (status.get("LastError") or {}).get("Message", "")
        if text in message or text in status["Follower"]["LastError"]:
            return status
        return None

    @unittest.skipUnless(os.geteuid() == 0, ROOT_REASON)
    def test_disk_full_then_freed(self):
        self.assertTrue(in_own_mount_namespace(), "the script did not start itself under "
                                                  "unshare --mount")
        mount_point = self.path("outbox-fs")
        os.makedirs(mount_point)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={OUTBOX_FS_BYTES}", "tmpfs",
                        mount_point], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", mount_point], check=False)
        database = os.path.join(mount_point, "outbox.db")
        source = self.start_source(fault_checks.fault_section(self.fake, Database=database))
        self.upload_study(source, per_series=3)
        self.assert_mirror_consistent(source)

        filler = os.path.join(mount_point, "filler")
        written = fill_file_system(filler)
        print(f"filled the outbox's file system with {written} bytes", flush=True)
        uploaded = self.upload_study(source, series=4, per_series=25)

        def queueing_failed():
            status = source.status()
            message = (status.get("LastError") or {}).get("Message", "")
            failing = harness.metric_value(source, "azure_dicom_queueing_failed") == 1
            return status if failing and "cannot be queued" in message else None

        status = harness.wait_for(queueing_failed, STATE_TIMEOUT_SECONDS,
                                  "the status to report that instances cannot be queued",
                                  describe_state=source.status)
        print(f"status on the full disk: {status['LastError']} {status['Follower']}",
              flush=True)
        self.assertTrue(status["Follower"]["LastError"], status)
        self.assertTrue(source.is_running())
        self.assertEqual(len(harness.list_sop_uids(source)), 3 + len(uploaded))

        os.remove(filler)
        harness.wait_for(lambda: harness.metric_value(source,
                                                      "azure_dicom_queueing_failed") == 0,
                         STATE_TIMEOUT_SECONDS, "queueing to work again after space is freed",
                         describe_state=source.status)
        self.assert_mirror_consistent(source)
        self.assertFalse(source.status()["Follower"]["LastError"])


def main():
    if os.geteuid() == 0 and not in_own_mount_namespace():
        environment = {**os.environ, MOUNT_NAMESPACE_VARIABLE: "1"}
        command = ["unshare", "--mount", "--propagation", "private", sys.executable,
                   os.path.abspath(__file__), *sys.argv[1:]]
        os.execvpe(command[0], command, environment)
    fault_checks.main()


if __name__ == "__main__":
    main()
