"""An invalid "AzureDicom" section stops Orthanc at start-up, with a log line naming the key.

No case uploads an instance, so an Orthanc that wrongly starts has nothing to send; the
non-loopback URLs use the reserved .invalid domain.
"""

import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

EXIT_TIMEOUT_SECONDS = 30
LOOPBACK_SERVICE = "http://127.0.0.1:9/dicom-web"
REMOTE_HTTP_URL = "http://dicom.invalid"

CLIENT_SECRET_CREDENTIALS = {
    "Type": "ClientSecret",
    "TenantId": "00000000-0000-0000-0000-000000000001",
    "ClientId": "00000000-0000-0000-0000-000000000002",
    "ClientSecret": "secret",
    "AuthorityHost": "http://127.0.0.1:9",
}


def with_value(path, value):
    """Return a change of the section that sets the value at a dotted path."""
    def change(section):
        keys = path.split(".")
        node = section
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return change


def without(path):
    def change(section):
        keys = path.split(".")
        node = section
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return change


def with_client_secret(change=None):
    def apply(section):
        section["Credentials"] = copy.deepcopy(CLIENT_SECRET_CREDENTIALS)
        if change is not None:
            change(section)
    return apply


# (case, change of a valid section, key that the log must name).
INVALID_CASES = [
    ("unknown key", with_value("Bogus", 1), "AzureDicom.Bogus"),
    ("unknown nested key", with_value("Retry.Bogus", 1), "AzureDicom.Retry.Bogus"),
    # "true" and "false" as strings are accepted, because ${VAR} substitution yields strings.
    ("Enable not a boolean", with_value("Enable", "yes"), "AzureDicom.Enable"),
    ("Workers not a number", with_value("Workers", "four"), "AzureDicom.Workers"),
    ("Workers zero", with_value("Workers", 0), "AzureDicom.Workers"),
    ("MaxRequestSizeMB zero", with_value("MaxRequestSizeMB", 0), "AzureDicom.MaxRequestSizeMB"),
    ("MaxInstancesPerRequest negative", with_value("MaxInstancesPerRequest", -1),
     "AzureDicom.MaxInstancesPerRequest"),
    ("ApiVersion unknown", with_value("ApiVersion", "v3"), "AzureDicom.ApiVersion"),
    ("ServiceUrl missing", without("ServiceUrl"), "AzureDicom.ServiceUrl"),
    ("ServiceUrl not a URL", with_value("ServiceUrl", "dicom-web"), "AzureDicom.ServiceUrl"),
    ("ServiceUrl plain http remote", with_value("ServiceUrl", REMOTE_HTTP_URL),
     "AzureDicom.ServiceUrl"),
    ("Retry not an object", with_value("Retry", 3), "AzureDicom.Retry"),
    ("Retry.MaxAttempts negative", with_value("Retry.MaxAttempts", -1),
     "AzureDicom.Retry.MaxAttempts"),
    ("Retry.InitialDelaySeconds text", with_value("Retry.InitialDelaySeconds", "soon"),
     "AzureDicom.Retry.InitialDelaySeconds"),
    ("Tls.VerifyPeer text", with_value("Tls.VerifyPeer", "yes"), "AzureDicom.Tls.VerifyPeer"),
    ("Credentials.Type unknown", with_value("Credentials.Type", "Password"),
     "AzureDicom.Credentials.Type"),
    ("ClientSecret without TenantId", with_client_secret(without("Credentials.TenantId")),
     "AzureDicom.Credentials.TenantId"),
    ("ClientSecret without ClientId", with_client_secret(without("Credentials.ClientId")),
     "AzureDicom.Credentials.ClientId"),
    ("AuthorityHost plain http remote",
     with_client_secret(with_value("Credentials.AuthorityHost", REMOTE_HTTP_URL)),
     "AzureDicom.Credentials.AuthorityHost"),
]

VALID_CASES = [
    ("loopback IPv4", with_value("ServiceUrl", LOOPBACK_SERVICE)),
    ("localhost", with_value("ServiceUrl", "http://localhost:9/dicom-web")),
    ("loopback IPv6", with_value("ServiceUrl", "http://[::1]:9/dicom-web")),
    ("fractional retry delay", with_value("Retry.InitialDelaySeconds", 0.2)),
    ("client secret on loopback", with_client_secret()),
    ("disabled", with_value("Enable", False)),
    ("Enable as a string", with_value("Enable", "true")),
]


class ConfigErrorsTest(harness.OrthancTestCase):
    def make_source(self, name, change):
        section = harness.azure_section(LOOPBACK_SERVICE, "")
        change(section)
        return self.add_orthanc(harness.source_orthanc(self.path(name.replace(" ", "-")),
                                                       section))

    def test_invalid_values_stop_orthanc(self):
        for name, change, key in INVALID_CASES:
            with self.subTest(case=name):
                source = self.make_source(name, change)
                source.launch()
                code = source.wait_exit(EXIT_TIMEOUT_SECONDS)
                running = code is None
                source.stop()
                self.assertFalse(running, f"Orthanc started with {name}:\n{source.tail_log()}")
                self.assertNotEqual(code, 0)
                self.assertIn(key, source.read_log(), source.tail_log())

    def test_valid_values_start(self):
        for name, change in VALID_CASES:
            with self.subTest(case=name):
                source = self.make_source(name, change)
                source.start()
                self.assertTrue(source.is_running())
                source.stop()

    def test_database_setting(self):
        database = self.path("outbox", "mirror.db")
        os.makedirs(os.path.dirname(database))
        source = self.make_source("database", with_value("Database", database))
        source.start()
        self.assertTrue(os.path.isfile(database))
        self.assertEqual([name for name in os.listdir(source.storage_directory)
                          if "outbox" in name], [])

        default = self.make_source("default database", lambda section: None)
        default.start()
        self.assertTrue([name for name in os.listdir(default.storage_directory)
                         if name.endswith(".db")])


if __name__ == "__main__":
    harness.main()
