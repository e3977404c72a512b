"""Browser tests of the Orthanc Explorer extension and the dashboard at /azure-dicom/ui/.

Each test starts the fake Azure service and an Orthanc with the plugin on loopback, as the
integration tests do, and prepares the data over the REST API. It then runs one scenario of
scenarios.js in Debian's headless Chromium (/usr/bin/chromium), which playwright-core drives.
playwright-core comes from node_modules of this folder, so run `npm ci` here first. A failing
scenario saves a screenshot in browser-screenshots/ of the build folder.
"""

import json
import os
import secrets
import subprocess
import sys
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Integration"))

import fake_azure  # noqa: E402
import harness  # noqa: E402

NODE = "/usr/bin/node"
CHROMIUM = "/usr/bin/chromium"
SCENARIOS = os.path.join(HERE, "scenarios.js")
PLAYWRIGHT = os.path.join(HERE, "node_modules", "playwright-core")
SCENARIO_TIMEOUT_SECONDS = 240
MIRROR_TIMEOUT_SECONDS = 60
INSTANCES_PER_STUDY = 3
# The fake rejects instances with this PatientID (FailureReason 43264) until a test changes its
# list of invalid IDs.
INVALID_PATIENT_ID = "INVALID"
# Orthanc's user in the tests with HTTP Basic authentication.
USER_NAME = "browser-user"
UI_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}


def screenshot_folder():
    build = os.environ.get("AZURE_DICOM_BUILD_DIR", os.path.join(HERE, "..", "..", "build"))
    return os.path.join(os.path.abspath(build), "browser-screenshots")


class BrowserTest(harness.OrthancTestCase):
    @classmethod
    def setUpClass(cls):
        missing = [path for path in (NODE, CHROMIUM, PLAYWRIGHT) if not os.path.exists(path)]
        if missing:
            raise RuntimeError(f"missing {', '.join(missing)}: install Node.js and Debian's "
                               "chromium and chromium-driver (Resources/install-dependencies.sh), "
                               f"then run `npm ci` in {HERE} (Resources/run-tests.sh does both)")

    def setUp(self):
        super().setUp()
        self.fake = fake_azure.FakeAzure(require_auth=False).start()
        self.addCleanup(self.fake.stop)

    def make_source(self):
        section = harness.azure_section(self.fake.url, "v2")
        source = harness.source_orthanc(self.path("source"), section)
        return self.add_orthanc(source)

    def upload_study(self, source, patient_id=None):
        instances = harness.make_study(1, INSTANCES_PER_STUDY, patient_id=patient_id)
        ids = harness.upload_all(source, instances)
        instance = source.get_json(f"/instances/{ids[0]}")
        series = source.get_json(f"/series/{instance['ParentSeries']}")
        return {
            "study": series["ParentStudy"],
            "series": instance["ParentSeries"],
            "instances": ids,
            "uids": [harness.sop_uid_of(data) for data in instances],
        }

    def make_authenticated_source(self, password, **settings):
        """Return an Orthanc that requires USER_NAME and password, whose session sends them."""
        section = harness.azure_section(self.fake.url, "v2", **settings)
        source = harness.source_orthanc(self.path("source"), section, extra={
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER_NAME: password},
        })
        source.session.auth = (USER_NAME, password)
        return self.add_orthanc(source)

    def run_scenario(self, name, source, **settings):
        config = {"orthanc": source.url, "fake": self.fake.url,
                  "screenshots": screenshot_folder(), **settings}
        if source.session.auth:
            config["user"], config["password"] = source.session.auth
        started = time.monotonic()
        result = subprocess.run([NODE, SCENARIOS, name, json.dumps(config)], cwd=HERE,
                                capture_output=True, text=True,
                                timeout=SCENARIO_TIMEOUT_SECONDS)
        print(f"\n----- {name} ({time.monotonic() - started:.1f} s) -----\n{result.stdout}"
              f"{result.stderr}", file=sys.stderr)
        self.assertEqual(result.returncode, 0, f"scenario {name} failed:\n{result.stderr}")

    def test_ui_routes(self):
        source = self.make_source().start()
        for name, content_type in UI_FILES.items():
            response = source.get(f"/azure-dicom/ui/{name}")
            self.assertEqual(response.status_code, 200, name)
            self.assertTrue(response.headers["Content-Type"].startswith(content_type),
                            response.headers["Content-Type"])

        index = source.get("/azure-dicom/ui/index.html").text
        for path in ("/azure-dicom/ui/", "/azure-dicom/ui"):
            response = source.get(path, allow_redirects=False)
            self.assertEqual(response.status_code, 200, path)
            self.assertEqual(response.text, index, path)

        missing = source.get("/azure-dicom/ui/missing.js")
        self.assertEqual(missing.status_code, 404)
        self.assertIn("missing.js", missing.json()["Message"])
        self.assertEqual(source.post("/azure-dicom/ui/app.js").status_code, 405)

        plugin = source.get_json("/plugins/azure-dicom")
        self.assertEqual(plugin["RootUri"], "../azure-dicom/ui/index.html")
        self.assertIn("Azure", plugin["Description"])
        self.assertIn("azure-dicom-dashboard-link", source.get("/plugins/explorer.js").text)

    def test_explorer_badge_mirrored(self):
        source = self.make_source().start()
        study = self.upload_study(source)
        self.run_scenario("explorer-badge-mirrored", source, study=study["study"],
                          series=study["series"], instances=INSTANCES_PER_STUDY)

    def test_explorer_mirror_button(self):
        # The plugin queues only the changes made after its first start, so a study stored by
        # an Orthanc without the plugin stays NotMirrored until it is synced.
        source = self.make_source()
        plugins = source.plugins
        source.plugins = []
        source.start()
        study = self.upload_study(source)
        source.stop()
        source.plugins = plugins
        source.start()
        self.assertEqual(source.get_json(f"/azure-dicom/resources/{study['study']}")["Summary"],
                         "NotMirrored")

        self.run_scenario("explorer-mirror-button", source, study=study["study"],
                          instances=INSTANCES_PER_STUDY)
        self.assertTrue(set(study["uids"]) <= self.fake.stored_uids(
            fake_azure.DEFAULT_PARTITION))

    def test_dashboard_failed_retry(self):
        source = self.make_source().start()
        study = self.upload_study(source, patient_id=INVALID_PATIENT_ID)

        def all_failed():
            items = {item["SOPInstanceUID"]: item
                     for item in harness.list_outbox(source, state="Failed")}
            return items if set(study["uids"]) <= set(items) else None

        failed = harness.wait_for(all_failed, MIRROR_TIMEOUT_SECONDS,
                                  "every instance of the study to be Failed",
                                  describe_state=source.status)
        first = failed[study["uids"][0]]

        self.run_scenario("dashboard-failed-retry", source, failedUids=study["uids"],
                          failureReason=first["FailureReason"], statusCode=first["StatusCode"])
        self.assertTrue(set(study["uids"]) <= self.fake.stored_uids(
            fake_azure.DEFAULT_PARTITION))

    def test_dashboard_nodes(self):
        section = harness.azure_section(self.fake.url, "v2")
        section["NodeName"] = "browser-node"
        source = self.add_orthanc(harness.source_orthanc(self.path("source"), section)).start()
        self.upload_study(source)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=INSTANCES_PER_STUDY)

        self.run_scenario("dashboard-nodes", source, node="browser-node",
                          instances=INSTANCES_PER_STUDY)

    def test_dashboard_credentials_url(self):
        password = "pw-" + secrets.token_hex(12)
        source = self.make_authenticated_source(password, NodeName="browser-node").start()
        anonymous = requests.get(source.url + "/azure-dicom/status",
                                 timeout=harness.REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(anonymous.status_code, 401, "Orthanc answered without credentials")
        study = self.upload_study(source)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=INSTANCES_PER_STUDY)

        self.run_scenario("dashboard-credentials-url", source, node="browser-node",
                          study=study["study"], instances=INSTANCES_PER_STUDY)

    def test_dashboard_display(self):
        source = self.make_source().start()
        study = self.upload_study(source)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=INSTANCES_PER_STUDY)

        self.run_scenario("dashboard-display", source, instance=study["instances"][0],
                          instances=INSTANCES_PER_STUDY)

    def test_dashboard_rollback_plan(self):
        source = self.make_source().start()
        response = source.post_json("/azure-dicom/snapshots", {"Label": "before the study"})
        self.assertEqual(response.status_code, 200, response.text)
        snapshot = response.json()["ID"]
        study = self.upload_study(source)
        source.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=INSTANCES_PER_STUDY)

        self.run_scenario("dashboard-rollback-plan", source, snapshot=snapshot,
                          label="before the study", instances=INSTANCES_PER_STUDY)
        status = source.status()
        job = source.wait_job(status["Rollback"]["Job"], MIRROR_TIMEOUT_SECONDS)
        self.assertEqual(job["State"], "Success", job)
        self.assertFalse(set(study["uids"]) & self.fake.stored_uids(
            fake_azure.DEFAULT_PARTITION))


if __name__ == "__main__":
    harness.main()
