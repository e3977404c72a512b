"""Orthanc sources and STOW-RS targets of the benchmark, built on UnitTests/Integration/harness.py.

Every Orthanc listens on free loopback ports with "RemoteAccessAllowed" false (harness.py), and
bench.sh runs the benchmark in a network namespace where only loopback exists.
"""

import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "UnitTests", "Integration"))

import harness  # noqa: E402

DICOMWEB_PLUGIN = harness.DICOMWEB_PLUGIN
DICOMWEB_SERVER_NAME = "target"

# The plugin's settings in every run of the benchmark.
WORKERS = 4
MAX_INSTANCES_PER_REQUEST = 50
MAX_REQUEST_SIZE_MB = 64
REQUEST_TIMEOUT_SECONDS = 600
RETRY = {"InitialDelaySeconds": 1, "MaxDelaySeconds": 10, "MaxAttempts": 10}

# Orthanc settings of every source. HttpTimeout bounds a whole request of Orthanc's HTTP client,
# and the DICOMweb plugin's STOW job sends all its instances in one request.
SOURCE_SETTINGS = {"HttpTimeout": 3600, "StableAge": 2}

# Debian's Orthanc 1.10 uses Debian's DCMTK (3.6.7), which leaves Nagle's algorithm on unless
# this variable is set. With it on, each C-STORE waits for delayed TCP acknowledgements: 100
# instances of 2 KB took 9.2 s instead of 0.44 s with the variable set for storescu and
# Orthanc (measured with Debian 12's packages).
DCMTK_ENVIRONMENT = {"TCP_NODELAY": "1"}


def plugin_section(service_url, database, enable=True):
    """Return the "AzureDicom" section of a source, sending to a plain DICOMweb server."""
    return {
        "Enable": enable,
        "ServiceUrl": service_url,
        "ApiVersion": "",
        "Database": database,
        "Workers": WORKERS,
        "MaxInstancesPerRequest": MAX_INSTANCES_PER_REQUEST,
        "MaxRequestSizeMB": MAX_REQUEST_SIZE_MB,
        "RequestTimeoutSeconds": REQUEST_TIMEOUT_SECONDS,
        "Retry": dict(RETRY),
        "Credentials": {"Type": "None"},
    }


def dicomweb_client_section(service_url):
    """Return the "DicomWeb" section of a source whose DICOMweb plugin sends to service_url."""
    return {"Enable": True, "Root": "/dicom-web/",
            "Servers": {DICOMWEB_SERVER_NAME: [service_url.rstrip("/") + "/"]}}


def make_source(directory, name, plugins=(), azure=None, archive=None, extra=None,
                dicom_server=False):
    """Return an Orthanc source (not started). With archive, it uses that storage folder.

    With dicom_server, Orthanc accepts C-STORE, with Nagle's algorithm off (DCMTK_ENVIRONMENT).
    """
    settings = dict(SOURCE_SETTINGS)
    if archive is not None:
        settings["StorageDirectory"] = archive
        settings["IndexDirectory"] = archive
    settings.update(extra or {})
    return harness.OrthancProcess(directory, name, plugins=list(plugins), azure=azure,
                                  extra=settings, dicom_server=dicom_server,
                                  environment=DCMTK_ENVIRONMENT if dicom_server else None)


class OrthancTarget:
    """A DICOMweb target: a new Orthanc with its DICOMweb plugin for each run."""

    name = "Orthanc"

    def __init__(self):
        self.orthanc = None
        self.directory = None

    def start(self, directory):
        """Start an empty target in directory; return its DICOMweb base URL."""
        self.directory = directory
        self.orthanc = harness.target_orthanc(directory).start()
        return harness.dicomweb_base(self.orthanc)

    @property
    def pid(self):
        return self.orthanc.process.pid

    def count(self):
        """Return the instances that the target stored since start()."""
        return self.orthanc.get_json("/statistics")["CountInstances"]

    def version(self):
        return self.orthanc.get_json("/system")["Version"]

    def stop(self):
        if self.orthanc is not None:
            self.orthanc.stop()
            self.orthanc = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


class SinkTarget:
    """The null sink, one process for the whole benchmark; counts are taken since start()."""

    name = "null sink"

    def __init__(self, sink):
        self.sink = sink
        self.baseline = 0

    def start(self, directory):
        del directory  # the sink stores nothing
        self.baseline = self.sink.stats()["Instances"]
        return self.sink.url + "/dicom-web"

    @property
    def pid(self):
        return self.sink.pid

    def count(self):
        return self.sink.stats()["Instances"] - self.baseline

    def stop(self):
        pass
