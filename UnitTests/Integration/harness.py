"""Shared helpers of the integration tests: Orthanc processes on loopback, DICOM data, waits.

Every test gets its own temporary folder and its own free loopback ports, so that the test
scripts can run in parallel (ctest -j2). Orthanc 1.10 has no bind-address setting and listens
on every interface, so the generated configurations keep RemoteAccessAllowed false.
"""

import copy
import hashlib
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

import pydicom
import pydicom.uid
import requests
from pydicom.dataset import Dataset, FileMetaDataset

ORTHANC_BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
PYDICOM_TEST_FILES = "/usr/lib/python3/dist-packages/pydicom/data/test_files"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
REQUEST_TIMEOUT_SECONDS = 60
PAGE_SIZE = 500
LOG_TAIL_LINES = 60
PORT_ATTEMPTS = 3
# Orthanc 1.10's error when it cannot bind its HTTP port.
PORT_IN_USE_MESSAGE = "privileged or already in use"
POLL_INTERVAL_SECONDS = 0.2

# Bytes of a generated instance that are not pixel data (file meta and attributes), so that the
# pixel data can be sized to reach a requested file size.
GENERATED_HEADER_BYTES = 800
GENERATED_COLUMNS = 64

# States of the outbox, and those still on their way to the destination.
ALL_STATES = {"Pending", "Sending", "Mirrored", "AlreadyPresent", "Failed", "Skipped",
              "RolledBack"}
ACTIVE_STATES = ("Pending", "Sending")


def plugin_path():
    """Return the plugin under test, from AZURE_DICOM_PLUGIN or the default build folder."""
    path = os.environ.get("AZURE_DICOM_PLUGIN")
    if not path:
        build = os.environ.get("AZURE_DICOM_BUILD_DIR",
                               os.path.join(os.path.dirname(__file__), "..", "..", "build"))
        path = os.path.join(build, "libOrthancAzureDicom.so")
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise RuntimeError(f"plugin not found at {path}: build the OrthancAzureDicom target "
                           "or set AZURE_DICOM_PLUGIN")
    return path


def free_port():
    """Return a TCP port of 127.0.0.1 that nothing listens on at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout, description, describe_state=None,
             interval=POLL_INTERVAL_SECONDS):
    """Call condition() until it returns a true value, and return that value.

    Raises AssertionError after timeout seconds, with description and the output of
    describe_state() (for example the last status JSON), so that a failure shows where the
    wait stopped.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (requests.RequestException, ValueError, KeyError) as error:
            last_error = error
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    message = f"timed out after {timeout} s waiting for {description}"
    if last_error is not None:
        message += f"\nlast error: {last_error!r}"
    if describe_state is not None:
        try:
            state = describe_state()
        except (requests.RequestException, ValueError) as error:
            state = f"(state not available: {error!r})"
        if not isinstance(state, str):
            state = json.dumps(state, indent=2, sort_keys=True)
        message += f"\nlast state:\n{state}"
    raise AssertionError(message)


def is_closed_keep_alive(error):
    """Return whether a requests error comes from a server that closed without a response."""
    pending, seen = [error], set()
    while pending:
        cause = pending.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, http.client.RemoteDisconnected):
            return True
        pending.extend(item for item in (*cause.args, cause.__cause__, cause.__context__)
                       if isinstance(item, BaseException))
    return False


class PortInUse(Exception):
    """Orthanc could not bind one of its ports, which another process took first."""


class OrthancProcess:
    """Orthanc process with a generated configuration in its own folder.

    The process is started, stopped and killed by its PID only. Its standard output and error go
    to orthanc.log in its folder, which tail_log() returns for failure reports.
    """

    def __init__(self, directory, name, plugins=(), azure=None, extra=None,
                 dicom_server=False, environment=None):
        self.directory = directory
        self.name = name
        self.plugins = list(plugins)
        self.azure = copy.deepcopy(azure)
        self.extra = copy.deepcopy(extra) if extra else {}
        self.dicom_server = dicom_server
        self.environment = dict(environment or {})  # variables added to the inherited environment
        self.options = []  # command-line options of Orthanc, such as --verbose or --trace
        self.responses = None  # every later REST response, once record_responses() is called
        self.http_port = None
        self.dicom_port = None
        self.process = None
        self.log_file = None
        self.launch_offset = 0
        self.session = requests.Session()
        os.makedirs(directory, exist_ok=True)
        self.config_path = os.path.join(directory, "orthanc.json")
        self.log_path = os.path.join(directory, "orthanc.log")

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def storage_directory(self):
        return os.path.join(self.directory, "storage")

    def make_configuration(self):
        configuration = {
            "Name": self.name,
            "StorageDirectory": self.storage_directory,
            "IndexDirectory": self.storage_directory,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomServerEnabled": self.dicom_server,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpTimeout": REQUEST_TIMEOUT_SECONDS,
            "StableAge": 2,
            "SaveJobs": False,
            "Plugins": self.plugins,
        }
        if self.azure is not None:
            configuration["AzureDicom"] = self.azure
        configuration.update(self.extra)
        return configuration

    def write_configuration(self):
        with open(self.config_path, "w", encoding="utf-8") as output:
            json.dump(self.make_configuration(), output, indent=2)

    def launch(self):
        """Start Orthanc without waiting. The ports are kept across restarts."""
        if self.http_port is None:
            self.choose_ports()
        self.write_configuration()
        self.log_file = open(self.log_path, "ab")
        self.log_file.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
        self.log_file.flush()
        self.launch_offset = self.log_file.tell()
        # CTest kills a test that exceeds its timeout, and its Orthanc processes must not outlive
        # it: setpriv (util-linux) sets the parent-death signal and then runs Orthanc. Linux sends
        # the signal when the thread that started the child ends, so every Orthanc is started from
        # the test's main thread.
        command = ["setpriv", "--pdeathsig", "KILL", "--", ORTHANC_BINARY, *self.options,
                   self.config_path]
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.directory,
                                        env={**os.environ, **self.environment})

    def choose_ports(self):
        self.http_port = free_port()
        self.dicom_port = free_port()

    def start(self, timeout=START_TIMEOUT_SECONDS):
        """Start Orthanc and wait until GET /system responds.

        Another process can take a port between free_port() and Orthanc's bind (tests run in
        parallel), so a start that fails on a port in use is tried again on new ports.
        """
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                return self.start_once(timeout)
            except PortInUse:
                self.choose_ports()
        return self.start_once(timeout)

    def start_once(self, timeout):
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self._release()
                if PORT_IN_USE_MESSAGE in self.read_log(self.launch_offset):
                    raise PortInUse(self.name)
                raise RuntimeError(f"Orthanc {self.name} exited with code {code} at start-up"
                                   f"\n{self.tail_log()}")
            try:
                if self.session.get(self.url + "/system", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(POLL_INTERVAL_SECONDS)
        self.kill()
        raise RuntimeError(f"Orthanc {self.name} did not respond to GET /system within {timeout} s"
                           f"\n{self.tail_log()}")

    def wait_exit(self, timeout):
        """Wait for the process to end; return its exit code, or None if it still runs."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=STOP_TIMEOUT_SECONDS):
        """Send SIGTERM, wait, and send SIGKILL if Orthanc has not ended after timeout seconds."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            if self.wait_exit(timeout) is None:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self._release()

    def kill(self):
        """Kill Orthanc with SIGKILL (a crash: nothing is flushed or closed)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        return self._release()

    def _release(self):
        code = self.process.returncode
        self.process = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        self.session.close()
        self.session = requests.Session()
        return code

    def is_running(self):
        return self.process is not None and self.process.poll() is None

    def tail_log(self, lines=LOG_TAIL_LINES):
        try:
            with open(self.log_path, "rb") as log:
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.splitlines()[-lines:])

    def read_log(self, offset=0):
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    def record_responses(self):
        """Keep (method, path, status, body text) of every later REST response in responses."""
        self.responses = []

    def request(self, method, path, **arguments):
        arguments.setdefault("timeout", REQUEST_TIMEOUT_SECONDS)
        try:
            response = self.session.request(method, self.url + path, **arguments)
        except requests.exceptions.ConnectionError as error:
            # Orthanc closes an idle keep-alive connection after a short timeout. A request sent
            # just as it closes is never read, so it is sent once more on a new connection.
            # A stopped or crashed Orthanc rejects that connection, and the error is raised.
            if not is_closed_keep_alive(error):
                raise
            response = self.session.request(method, self.url + path, **arguments)
        if self.responses is not None:
            self.responses.append((method, path, response.status_code, response.text))
        return response

    def get(self, path, **arguments):
        return self.request("GET", path, **arguments)

    def post(self, path, **arguments):
        return self.request("POST", path, **arguments)

    def get_json(self, path):
        response = self.get(path)
        if response.status_code != 200:
            raise AssertionError(f"GET {path} on {self.name} returned {response.status_code}: "
                                 f"{response.text[:500]}")
        return response.json()

    def post_json(self, path, body):
        """POST a JSON body and return the response (the caller checks its status)."""
        return self.post(path, data=json.dumps(body),
                         headers={"Content-Type": "application/json"})

    def put_json(self, path, body):
        """PUT a JSON body and return the response (the caller checks its status)."""
        return self.request("PUT", path, data=json.dumps(body),
                            headers={"Content-Type": "application/json"})

    def delete(self, path, **arguments):
        return self.request("DELETE", path, **arguments)

    # The mirror plugin's routes.

    def status(self):
        return self.get_json("/azure-dicom/status")

    def counts(self):
        return self.status()["Counts"]

    def wait_mirror_idle(self, timeout, expected_total=None):
        """Wait until no outbox item is Pending or Sending; return the last status.

        With expected_total, also wait until that many items were queued, because an idle
        outbox right after an upload may only mean that the change follower has not run yet.
        """
        def idle():
            status = self.status()
            counts = status["Counts"]
            if any(counts.get(state, 0) for state in ACTIVE_STATES):
                return None
            if expected_total is not None and sum(counts.values()) < expected_total:
                return None
            return status

        return wait_for(idle, timeout, f"the outbox of {self.name} to drain",
                        describe_state=self.status)

    def wait_job(self, job_id, timeout):
        """Wait until the Orthanc job ends; return its final JSON (State Success or Failure)."""
        def ended():
            job = self.get_json(f"/jobs/{job_id}")
            return job if job["State"] in ("Success", "Failure") else None

        return wait_for(ended, timeout, f"job {job_id} on {self.name} to end",
                        describe_state=lambda: self.get_json(f"/jobs/{job_id}"))


def target_orthanc(directory, name="target"):
    """Return an Orthanc with the DICOMweb plugin whose STOW base is {url}/dicom-web."""
    return OrthancProcess(directory, name, plugins=[DICOMWEB_PLUGIN],
                          extra={"DicomWeb": {"Enable": True, "Root": "/dicom-web/"}})


def dicomweb_base(target):
    return f"{target.url}/dicom-web"


def azure_section(service_url, api_version="", **settings):
    """Return an "AzureDicom" section with small delays suited to tests, updated by settings."""
    section = {
        "Enable": True,
        "ServiceUrl": service_url,
        "ApiVersion": api_version,
        "Workers": 2,
        "MaxInstancesPerRequest": 20,
        "MaxRequestSizeMB": 16,
        "RequestTimeoutSeconds": 30,
        "Retry": {"InitialDelaySeconds": 0.2, "MaxDelaySeconds": 2, "MaxAttempts": 5},
        "Credentials": {"Type": "None"},
    }
    section.update(copy.deepcopy(settings))
    return section


def source_orthanc(directory, azure, name="source", extra=None, plugins=None,
                   environment=None):
    """Return an Orthanc with the mirror plugin (and any other plugins) and the given section."""
    return OrthancProcess(directory, name, plugins=plugins or [plugin_path()], azure=azure,
                          extra=extra, environment=environment)


def only_loopback_interfaces():
    """Return True inside a network namespace whose only interface is lo (unshare --net)."""
    # if_nameindex() queries the kernel for this process's namespace, and /sys/class/net would
    # still list the host's interfaces unless sysfs was mounted again.
    return [name for _, name in socket.if_nameindex()] == ["lo"]


# DICOM data.

def read_uids(dataset):
    """Return (SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID), or None if one is missing."""
    uids = []
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        value = str(dataset.get(keyword, "") or "")
        if not value:
            return None
        uids.append(value)
    return tuple(uids)


def sample_files():
    """Return {SOPInstanceUID: path} for the pydicom sample files that carry all three UIDs.

    The folder is read directly: pydicom's get_testdata_files() tries to download more files
    and hangs without a network. Several samples share UIDs (MR_small in various encodings):
    only the first path of each SOP Instance UID is kept, in name order.
    """
    files = {}
    for name in sorted(os.listdir(PYDICOM_TEST_FILES)):
        path = os.path.join(PYDICOM_TEST_FILES, name)
        if not os.path.isfile(path):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # pydicom raises many types for the deliberately broken samples
            continue
        uids = read_uids(dataset)
        if uids is not None and uids[0] not in files:
            files[uids[0]] = path
    return files


def make_instance(study_uid, series_uid, patient_id, size_bytes, series_number=1,
                  instance_number=1, patient_name="Test^Mirror"):
    """Return the bytes of a CT Image Storage instance of about size_bytes bytes (Part 10)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID

    dataset = Dataset()
    dataset.file_meta = meta
    dataset.is_little_endian = True
    dataset.is_implicit_VR = False
    dataset.SOPClassUID = CT_IMAGE_STORAGE
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = series_uid
    if patient_id is not None:
        dataset.PatientID = patient_id
    dataset.PatientName = patient_name
    dataset.Modality = "CT"
    dataset.StudyDate = "20240101"
    dataset.StudyID = "1"
    dataset.SeriesNumber = series_number
    dataset.InstanceNumber = instance_number
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]

    pixel_bytes = max(size_bytes - GENERATED_HEADER_BYTES, 2 * GENERATED_COLUMNS)
    # Rows is a 16-bit value: files of more than about 8 MB get wider images.
    columns = GENERATED_COLUMNS
    while pixel_bytes // (2 * columns) > 65535:
        columns *= 2
    rows = max(1, pixel_bytes // (2 * columns))
    dataset.Rows = rows
    dataset.Columns = columns
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = 16
    dataset.BitsStored = 12
    dataset.HighBit = 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = random.randbytes(rows * columns * 2)

    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, write_like_original=False)
    return buffer.getvalue()


def make_study(series_count, instances_per_series, size_bytes=2048, patient_id=None):
    """Return a list of instance bytes: one study of series_count series."""
    study_uid = pydicom.uid.generate_uid()
    patient_id = patient_id if patient_id is not None else f"P{random.randrange(10**8):08d}"
    instances = []
    for series_number in range(1, series_count + 1):
        series_uid = pydicom.uid.generate_uid()
        for instance_number in range(1, instances_per_series + 1):
            instances.append(make_instance(study_uid, series_uid, patient_id, size_bytes,
                                           series_number, instance_number))
    return instances


def change_instance(data, **attributes):
    """Return a copy of a Part 10 file with the given attributes set and its UIDs kept.

    For example change_instance(data, SeriesDescription="other") makes other content for the
    same SOP Instance UID, as a corrected instance that is stored again would have.
    """
    dataset = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, write_like_original=False)
    return buffer.getvalue()


def sop_uid_of(data):
    """Return the SOPInstanceUID of a Part 10 file in memory."""
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def upload(orthanc, data):
    """POST one instance (bytes) to Orthanc; return the JSON response, or None when rejected."""
    response = orthanc.post("/instances", data=data,
                            headers={"Content-Type": "application/dicom"})
    if response.status_code != 200:
        return None
    return response.json()


def upload_with_stored_md5(orthanc, data):
    """Upload one instance; return its Orthanc ID and the MD5 of the file that Orthanc stored."""
    answer = upload(orthanc, data)
    if answer is None:
        raise AssertionError(f"{orthanc.name} rejected the instance")
    stored = orthanc.get(f"/instances/{answer['ID']}/file")
    if stored.status_code != 200:
        raise AssertionError(f"{orthanc.name} returned HTTP {stored.status_code} for the file "
                             f"of instance {answer['ID']}")
    return answer["ID"], hashlib.md5(stored.content).hexdigest()


def upload_all(orthanc, instances):
    """Upload a list of instance bytes; return the Orthanc ids, failing on any rejection."""
    ids = []
    for index, data in enumerate(instances):
        answer = upload(orthanc, data)
        if answer is None:
            raise AssertionError(f"{orthanc.name} rejected generated instance {index} "
                                 f"(SOP Instance UID {sop_uid_of(data)})")
        ids.append(answer["ID"])
    return ids


def upload_samples(orthanc):
    """Upload the pydicom samples; return {SOPInstanceUID: Orthanc id} for those it stored."""
    stored = {}
    for sop_uid, path in sample_files().items():
        with open(path, "rb") as sample:
            answer = upload(orthanc, sample.read())
        if answer is not None:
            stored[sop_uid] = answer["ID"]
    return stored


def list_instances(orthanc):
    """Return {Orthanc id: SOPInstanceUID} of every instance, read in pages."""
    instances = {}
    since = 0
    while True:
        page = orthanc.get_json(f"/instances?expand&since={since}&limit={PAGE_SIZE}")
        for instance in page:
            instances[instance["ID"]] = instance["MainDicomTags"].get("SOPInstanceUID", "")
        if len(page) < PAGE_SIZE:
            return instances
        since += PAGE_SIZE


def list_sop_uids(orthanc):
    """Return the set of SOP Instance UIDs stored in an Orthanc."""
    return set(list_instances(orthanc).values())


def list_outbox(orthanc, state=None, limit=PAGE_SIZE):
    """Return every outbox item of the plugin (optionally of one state), following Next."""
    items = []
    since = None
    while True:
        query = f"/azure-dicom/instances?limit={limit}"
        if state:
            query += f"&state={state}"
        if since is not None:
            query += f"&since={since}"
        page = orthanc.get_json(query)
        items.extend(page["Items"])
        since = page.get("Next")
        if since is None:
            return items


def metric_value(orthanc, name):
    """Return the value of a metric in /tools/metrics-prometheus, or None if it is absent."""
    for line in orthanc.get("/tools/metrics-prometheus").text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == name:
            return float(fields[1])
    return None


class OrthancTestCase(unittest.TestCase):
    """A test case with a temporary folder and Orthanc processes that end with the test.

    When the test fails, the tail of every Orthanc log is printed and the folder is kept.
    """

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix=f"azure-dicom-{self._testMethodName}-")
        self.processes = []
        self.addCleanup(self._finish)

    def add_orthanc(self, orthanc):
        self.processes.append(orthanc)
        return orthanc

    def path(self, *parts):
        return os.path.join(self.directory, *parts)

    def _failed(self):
        # Python 3.11 adds a failure to the result as soon as the test method raises, so the
        # result lists it when cleanups run.
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is None:
            return True
        for test, _ in list(result.failures) + list(result.errors):
            if getattr(test, "test_case", test) is self:
                return True
        return False

    def _finish(self):
        for orthanc in self.processes:
            orthanc.stop()
        if self._failed():
            for orthanc in self.processes:
                print(f"\n----- last lines of {orthanc.log_path} -----\n{orthanc.tail_log()}",
                      file=sys.stderr)
            print(f"\nfiles of the failed test kept in {self.directory}", file=sys.stderr)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)


def main():
    """Run the calling script's tests and exit 0 only if all of them passed."""
    program = unittest.main(exit=False, verbosity=2)
    result = program.result
    passed = result.testsRun - len(result.failures) - len(result.errors) - len(result.skipped)
    print(f"{passed} passed, {len(result.failures) + len(result.errors)} failed, "
          f"{len(result.skipped)} skipped")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
