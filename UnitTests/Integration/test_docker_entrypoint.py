"""Run Docker/entrypoint.sh outside Docker, as the image runs it, against real Orthanc servers.

The script takes its folders, its Orthanc binary and its plugins from variables, so the tests
point it at a temporary folder and at the built plugin, and no Docker engine is needed. The
health check is Docker/healthcheck.sh, run as a command with the same variables. The static
tests check that the Dockerfile builds with the README's commands and runs these two scripts.
"""

import glob
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import unittest

import requests

try:
    import yaml  # Debian's python3-yaml
except ImportError:
    yaml = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_azure  # noqa: E402
import harness  # noqa: E402

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCKER_FOLDER = os.path.join(REPOSITORY, "Docker")
ENTRYPOINT = os.path.join(DOCKER_FOLDER, "entrypoint.sh")
HEALTHCHECK = os.path.join(DOCKER_FOLDER, "healthcheck.sh")
DOCKERFILE = os.path.join(DOCKER_FOLDER, "Dockerfile")
COMPOSE_FILE = os.path.join(DOCKER_FOLDER, "docker-compose.yml")
DEMO_UPLOAD = os.path.join(DOCKER_FOLDER, "demo-upload.sh")
DEMO_HELPER = os.path.join(REPOSITORY, "Resources", "demo-data.py")
README = os.path.join(REPOSITORY, "README.md")
RUN_TESTS = os.path.join(REPOSITORY, "Resources", "run-tests.sh")
INSTALL_SCRIPT = "Resources/install-dependencies.sh"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

MIRROR_TIMEOUT_SECONDS = 120
SCRIPT_TIMEOUT_SECONDS = 60
DEMO_TIMEOUT_SECONDS = 300
SECRETS_FOLDER = "/run/secrets/"
DEFAULT_HTTP_PORT = 8042
VAULT_SECRET_NAME = "orthanc-dicom-client-secret"
# Variables of the test's own environment that would change what the entrypoint writes.
INHERITED_PREFIXES = ("ORTHANC_", "AZURE_", "IDENTITY_", "IMDS_")
ISOLATION_REASON = ("tests of managed identity and of fixed ports run only in a network "
                    "namespace with loopback alone (unshare --net), as the README's test "
                    "command does")
YAML_REASON = "python3-yaml is not installed"


def make_secret(prefix):
    """Return a random secret with the characters that JSON and curl configurations escape."""
    return f'{prefix}-{secrets.token_hex(8)}"\\~.${{HOME}}'


def base_environment():
    return {name: value for name, value in os.environ.items()
            if not name.startswith(INHERITED_PREFIXES)}


def read_folder_text(folder):
    """Return the text of every file under folder, symbolic links followed."""
    texts = []
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as data:
                texts.append(data.read().decode("utf-8", errors="replace"))
    return "\n".join(texts)


def read_dockerfile_stages():
    """Return {stage name: [instruction lines]} of the Dockerfile, continuation lines joined."""
    with open(DOCKERFILE, encoding="utf-8") as dockerfile:
        text = dockerfile.read().replace("\\\n", " ")
    stages = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = match.group(2) or match.group(1)
            stages[current] = [line]
        elif current is not None:
            stages[current].append(line)
    return stages


def read_compose():
    with open(COMPOSE_FILE, encoding="utf-8") as compose:
        return yaml.safe_load(compose)


def compose_environment(compose, service_name):
    """Return a service's variables, with each /run/secrets/NAME replaced by the secret's file.

    The runtime image's plugin path is replaced by the built plugin, unless the service sets
    ORTHANC_PLUGINS itself.
    """
    service = compose["services"][service_name]
    environment = {name: "" if value is None else str(value)
                   for name, value in service.get("environment", {}).items()}
    for name, value in environment.items():
        if value.startswith(SECRETS_FOLDER):
            secret = compose["secrets"][value[len(SECRETS_FOLDER):]]
            environment[name] = os.path.normpath(os.path.join(DOCKER_FOLDER, secret["file"]))
    environment.setdefault("ORTHANC_PLUGINS", harness.plugin_path())
    return environment


def cmake_definitions(command):
    return set(re.findall(r"-D\w+=\w+", command))


class EntrypointOrthanc(harness.OrthancProcess):
    """Orthanc started by Docker/entrypoint.sh with the variables of a container.

    The script runs Orthanc with exec, so the PID that the harness stops is Orthanc's.
    """

    def __init__(self, directory, name, variables, credentials=None):
        super().__init__(directory, name)
        self.variables = dict(variables)
        self.credentials = credentials  # (user, password) for the REST API, or None
        self.config_directory = os.path.join(directory, "config")

    @property
    def storage_directory(self):
        return os.path.join(self.directory, "db")

    def container_environment(self):
        environment = base_environment()
        environment.update({
            "ORTHANC_CONFIG_DIR": self.config_directory,
            "ORTHANC_STORAGE_DIR": self.storage_directory,
            "ORTHANC_BINARY": harness.ORTHANC_BINARY,
            "ORTHANC_PLUGINS": harness.plugin_path(),
            "ORTHANC_NAME": self.name,
            "ORTHANC_HTTP_PORT": str(self.http_port),
            "ORTHANC_DICOM_PORT": str(self.dicom_port),
            "ORTHANC_DICOM_SERVER": "false",
            # Orthanc 1.10 listens on every interface.
            "ORTHANC_REMOTE_ACCESS_ALLOWED": "false",
        })
        environment.update(self.variables)
        return environment

    def launch(self):
        if self.http_port is None:
            self.choose_ports()
        self.session.auth = self.credentials
        self.log_file = open(self.log_path, "ab")
        self.launch_offset = self.log_file.tell()
        # As in the harness, setpriv makes Orthanc die with the test, and exec keeps that setting.
        command = ["setpriv", "--pdeathsig", "KILL", "--", "bash", ENTRYPOINT]
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.directory,
                                        env=self.container_environment())

    def run_healthcheck(self, **variables):
        """Run the image's health check command and return its CompletedProcess."""
        environment = self.container_environment()
        environment.update(variables)
        return subprocess.run(["bash", HEALTHCHECK], env=environment, capture_output=True,
                              text=True, timeout=SCRIPT_TIMEOUT_SECONDS, check=False)

    def read_config_files(self):
        """Return {file name: parsed JSON} of the folder that the entrypoint wrote."""
        files = {}
        for path in sorted(glob.glob(os.path.join(self.config_directory, "*.json"))):
            with open(path, encoding="utf-8") as config:
                files[os.path.basename(path)] = json.load(config)
        return files


class DockerFilesTest(unittest.TestCase):
    """Static checks of the Docker files, without a Docker engine."""

    def test_scripts_syntax(self):
        for script in (ENTRYPOINT, HEALTHCHECK):
            result = subprocess.run(["bash", "-n", script], capture_output=True, text=True,
                                    check=False)
            self.assertEqual(result.returncode, 0, f"{script}: {result.stderr}")

    @unittest.skipUnless(shutil.which("shellcheck"), "shellcheck is not installed")
    def test_scripts_shellcheck(self):
        scripts = sorted(glob.glob(os.path.join(DOCKER_FOLDER, "*.sh")))
        self.assertIn(ENTRYPOINT, scripts)
        result = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True,
                                check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_build_stage_runs_readme_commands(self):
        with open(README, encoding="utf-8") as readme:
            readme_text = readme.read()
        with open(RUN_TESTS, encoding="utf-8") as run_tests:
            run_tests_text = run_tests.read()
        readme_cmake = [line for line in readme_text.splitlines()
                        if line.startswith("cmake -S . -B build") and "BUILD_TESTING=OFF" in line]
        self.assertEqual(len(readme_cmake), 1, "the README's release build command")

        build = " ".join(read_dockerfile_stages()["build"])
        self.assertIn("FROM debian:12 AS build", build)
        self.assertIn(f"bash {INSTALL_SCRIPT}", readme_text)
        self.assertIn(f"bash {INSTALL_SCRIPT}", run_tests_text)
        self.assertIn(f"bash {INSTALL_SCRIPT}", build)
        dockerfile_cmake = re.search(r"cmake -S \. -B build[^&;]*", build)
        self.assertIsNotNone(dockerfile_cmake, "cmake -S . -B build in the build stage")
        self.assertEqual(cmake_definitions(dockerfile_cmake.group(0)),
                         cmake_definitions(readme_cmake[0]))
        self.assertIn("-DBUILD_TESTING=OFF", dockerfile_cmake.group(0))
        self.assertIn("-DCMAKE_BUILD_TYPE=Release", dockerfile_cmake.group(0))

    def test_runtime_stage_runs_scripts(self):
        stages = read_dockerfile_stages()
        runtime = stages[list(stages)[-1]]
        text = "\n".join(runtime)
        self.assertTrue(runtime[0].startswith("FROM debian:12-slim"), runtime[0])

        copies = dict(re.findall(r"^COPY (?:--\S+ )*Docker/(\S+\.sh) (\S+)$", text, re.MULTILINE))
        healthcheck = re.search(r'^HEALTHCHECK .*CMD \["([^"]+)"\]$', text, re.MULTILINE)
        entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]$', text, re.MULTILINE)
        self.assertIsNotNone(healthcheck, "HEALTHCHECK CMD [...] in the runtime stage")
        self.assertIsNotNone(entrypoint, "ENTRYPOINT [...] in the runtime stage")
        self.assertEqual(copies.get("healthcheck.sh"), healthcheck.group(1))
        self.assertEqual(copies.get("entrypoint.sh"), entrypoint.group(1))
        self.assertIn("VOLUME /var/lib/orthanc/db", text)

        users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
        self.assertTrue(users, "USER in the runtime stage")
        self.assertNotIn(users[-1].split(":")[0], ("root", "0"))


    @unittest.skipUnless(yaml, YAML_REASON)
    def test_compose_secrets_in_files(self):
        compose = read_compose()
        for name, service in compose["services"].items():
            environment = service.get("environment", {})
            for variable, value in environment.items():
                if re.search(r"(SECRET|PASSWORD)$", variable):
                    self.fail(f"{name} sets {variable} in the compose file; use {variable}_FILE")
                if variable.endswith("_FILE") and value:
                    self.assertTrue(str(value).startswith(SECRETS_FOLDER), f"{name}: {variable}")
            for secret in service.get("secrets", []):
                self.assertIn(secret, compose["secrets"], f"{name} uses an undefined secret")
        demo_users = os.path.join(DOCKER_FOLDER, compose["secrets"]["demo-users"]["file"])
        self.assertTrue(os.path.isfile(demo_users), demo_users)

    @unittest.skipUnless(yaml, YAML_REASON)
    def test_compose_volume_and_build(self):
        compose = read_compose()
        orthanc = compose["services"]["orthanc"]
        self.assertIn("orthanc-db:/var/lib/orthanc/db", orthanc["volumes"])
        self.assertEqual(orthanc["build"]["dockerfile"], "Docker/Dockerfile")
        self.assertEqual(os.path.normpath(os.path.join(DOCKER_FOLDER, orthanc["build"]["context"])),
                         REPOSITORY)
        stages = read_dockerfile_stages()
        self.assertIn(compose["services"]["demo-upload"]["build"]["target"], stages)
        for name in ("demo-target", "demo-upload"):
            self.assertEqual(compose["services"][name]["network_mode"], "service:demo-mirror")


class EntrypointTest(harness.OrthancTestCase):
    def start_entrypoint(self, variables, credentials=None):
        orthanc = EntrypointOrthanc(self.path("mirror"), "entrypoint-mirror", variables,
                                    credentials)
        return self.add_orthanc(orthanc).start()

    def run_entrypoint(self, variables):
        """Run the entrypoint with /bin/true in place of Orthanc and return the result.

        The exit code is 0 only when the script wrote its configuration and ran the binary.
        """
        orthanc = EntrypointOrthanc(self.path("dry-run"), "dry-run", variables)
        orthanc.choose_ports()
        environment = orthanc.container_environment()
        environment["ORTHANC_BINARY"] = "/bin/true"
        return subprocess.run(["bash", ENTRYPOINT], env=environment, capture_output=True,
                              text=True, timeout=SCRIPT_TIMEOUT_SECONDS, check=False)

    def write_file(self, name, text):
        path = self.path(name)
        with open(path, "w", encoding="utf-8") as output:
            output.write(text)
        return path

    def mirror_study(self, orthanc, stored_uids):
        """Upload a study and wait until stored_uids() contains all of its instances."""
        instances = harness.make_study(1, 3)
        harness.upload_all(orthanc, instances)
        total = len(harness.list_instances(orthanc))
        status = orthanc.wait_mirror_idle(MIRROR_TIMEOUT_SECONDS, expected_total=total)
        self.assertEqual(status["Counts"]["Failed"], 0, status)
        self.assertEqual(status["Counts"]["Mirrored"], total, status)
        uids = {harness.sop_uid_of(data) for data in instances}
        self.assertEqual(stored_uids() & uids, uids)
        return status

    def assert_secret_hidden(self, orthanc, secret):
        self.assertNotIn(secret, read_folder_text(orthanc.config_directory))
        self.assertNotIn(secret, orthanc.read_log())
        self.assertNotIn(secret, orthanc.get("/azure-dicom/status").text)
        self.assertNotIn(secret, orthanc.get("/azure-dicom/credentials").text)

    def test_dicomweb_target_with_users(self):
        target = self.add_orthanc(harness.target_orthanc(self.path("target"))).start()
        password = make_secret("password")
        other_password = make_secret("other")
        users = self.write_file("users", f"# Orthanc users\nadmin:{password}\n\n"
                                         f"viewer:{other_password}\n")
        extra = self.path("extra")
        os.makedirs(extra)
        self.write_file("extra/modalities.json",
                        '{"DicomModalities": {"sample": ["SAMPLE", "127.0.0.1", 104]}}')
        mirror = self.start_entrypoint({
            "ORTHANC_USERS_FILE": users,
            "ORTHANC_EXTRA_CONFIG_DIR": extra,
            "AZURE_DICOM_SERVICE_URL": harness.dicomweb_base(target),
            "AZURE_DICOM_API_VERSION": "",
            "AZURE_DICOM_CREDENTIALS_TYPE": "None",
            "AZURE_DICOM_WORKERS": "2",
            "AZURE_DICOM_RETRY_INITIAL_DELAY_SECONDS": "0.2",
            "AZURE_DICOM_RETRY_MAX_DELAY_SECONDS": "2",
        }, credentials=("admin", password))

        self.assertEqual(mirror.get_json("/system")["Name"], "entrypoint-mirror")
        self.assertIn("sample", mirror.get_json("/modalities"))
        anonymous = requests.get(mirror.url + "/azure-dicom/status",
                                         timeout=harness.REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(anonymous.status_code, 401)
        viewer = requests.get(mirror.url + "/azure-dicom/status",
                                      auth=("viewer", other_password),
                                      timeout=harness.REQUEST_TIMEOUT_SECONDS)
        self.assertEqual(viewer.status_code, 200)
        healthy = mirror.run_healthcheck()
        self.assertEqual(healthy.returncode, 0, healthy.stderr)
        wrong_users = self.write_file("wrong-users", "admin:not-the-password\n")
        rejected = mirror.run_healthcheck(ORTHANC_USERS_FILE=wrong_users)
        self.assertEqual(rejected.returncode, 1, rejected.stderr)

        configuration = mirror.read_config_files()
        self.assertEqual(configuration["users.json"]["RegisteredUsers"]["admin"],
                         "${ORTHANC_USER_PASSWORD_2}")
        self.assertEqual(configuration["azure-dicom.json"]["AzureDicom"]["ApiVersion"], "")
        self.assertFalse(configuration["orthanc.json"]["RemoteAccessAllowed"])

        self.mirror_study(mirror, lambda: harness.list_sop_uids(target))
        for value in (password, other_password):
            self.assertNotIn(value, read_folder_text(mirror.config_directory))
            self.assertNotIn(value, mirror.read_log())

        mirror.stop()
        stopped = mirror.run_healthcheck()
        self.assertEqual(stopped.returncode, 1, stopped.stderr)

    def test_client_secret_file(self):
        secret = make_secret("secret")
        fake = fake_azure.FakeAzure(client_secret=secret).start()
        self.addCleanup(fake.stop)
        # Written as on Windows: the final CR LF is not part of the secret.
        secret_file = self.write_file("client-secret", secret + "\r\n")
        mirror = self.start_entrypoint({
            "ORTHANC_AUTHENTICATION": "false",
            "AZURE_DICOM_SERVICE_URL": fake.url,
            "AZURE_DICOM_API_VERSION": "v2",
            "AZURE_DICOM_CREDENTIALS_TYPE": "ClientSecret",
            "AZURE_TENANT_ID": fake.tenant,
            "AZURE_CLIENT_ID": fake.client_id,
            "AZURE_AUTHORITY_HOST": fake.url,
            "AZURE_DICOM_CLIENT_SECRET_FILE": secret_file,
            "AZURE_DICOM_CA_CERTIFICATES": CA_BUNDLE,
            "AZURE_DICOM_RETRY_INITIAL_DELAY_SECONDS": "0.2",
        })

        healthy = mirror.run_healthcheck()
        self.assertEqual(healthy.returncode, 0, healthy.stderr)
        status = self.mirror_study(mirror, fake.stored_uids)
        self.assertEqual(status["Credentials"]["Type"], "ClientSecret")
        token_requests = [request for request in fake.state()["Requests"]
                          if request["Kind"] == "token" and request["Status"] == 200]
        self.assertTrue(token_requests)

        section = mirror.read_config_files()["azure-dicom.json"]["AzureDicom"]
        self.assertEqual(section["Credentials"]["ClientSecret"], "${AZURE_DICOM_CLIENT_SECRET}")
        self.assertEqual(section["Tls"]["CaCertificates"], CA_BUNDLE)
        self.assertNotIn("users.json", mirror.read_config_files())
        self.assert_secret_hidden(mirror, secret)

    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_key_vault_managed_identity(self):
        secret = make_secret("vault")
        fake = fake_azure.FakeAzure(client_secret=secret).start()
        self.addCleanup(fake.stop)
        fake.set_vault_secret(VAULT_SECRET_NAME, secret)
        header = "header-" + secrets.token_hex(8)
        fake.set_identity_header(header)
        mirror = self.start_entrypoint({
            "ORTHANC_AUTHENTICATION": "false",
            "AZURE_DICOM_SERVICE_URL": fake.url,
            "AZURE_DICOM_CREDENTIALS_TYPE": "ClientSecret",
            "AZURE_TENANT_ID": fake.tenant,
            "AZURE_CLIENT_ID": fake.client_id,
            "AZURE_AUTHORITY_HOST": fake.url,
            "AZURE_DICOM_KEY_VAULT_URL": fake.url,
            "AZURE_DICOM_KEY_VAULT_SECRET_NAME": VAULT_SECRET_NAME,
            "IDENTITY_ENDPOINT": fake.url + "/msi/token",
            "IDENTITY_HEADER": header,
        })

        self.mirror_study(mirror, fake.stored_uids)
        vault_reads = [request for request in fake.state()["Requests"]
                       if request["Kind"] == "vault" and request["Status"] == 200]
        self.assertTrue(vault_reads)
        credentials = mirror.read_config_files()["azure-dicom.json"]["AzureDicom"]["Credentials"]
        self.assertNotIn("ClientSecret", credentials)
        self.assertEqual(credentials["KeyVault"]["Credentials"], {"Type": "ManagedIdentity"})
        self.assert_secret_hidden(mirror, secret)

    def test_missing_secret_file(self):
        result = self.run_entrypoint({
            "ORTHANC_AUTHENTICATION": "false",
            "AZURE_DICOM_SERVICE_URL": "https://example.dicom.azurehealthcareapis.com",
            "AZURE_DICOM_CREDENTIALS_TYPE": "ClientSecret",
            "AZURE_DICOM_CLIENT_SECRET_FILE": self.path("absent"),
        })

        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("AZURE_DICOM_CLIENT_SECRET_FILE", result.stderr)
        self.assertIn("cannot read", result.stderr)

    def test_secret_file_with_nul(self):
        secret_file = self.path("secret-with-nul")
        with open(secret_file, "wb") as output:
            output.write(b"ab\x00cd")
        result = self.run_entrypoint({
            "ORTHANC_AUTHENTICATION": "false",
            "AZURE_DICOM_SERVICE_URL": "https://example.dicom.azurehealthcareapis.com",
            "AZURE_DICOM_CREDENTIALS_TYPE": "ClientSecret",
            "AZURE_DICOM_CLIENT_SECRET_FILE": secret_file,
        })

        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("NUL byte", result.stderr)

    def test_managed_identity_keys(self):
        # The AKS workload identity webhook sets AZURE_TENANT_ID, which a managed identity rejects.
        result = self.run_entrypoint({
            "ORTHANC_AUTHENTICATION": "false",
            "AZURE_DICOM_SERVICE_URL": "https://example.dicom.azurehealthcareapis.com",
            "AZURE_DICOM_CREDENTIALS_TYPE": "ManagedIdentity",
            "AZURE_TENANT_ID": fake_azure.DEFAULT_TENANT,
            "AZURE_CLIENT_ID": fake_azure.DEFAULT_CLIENT_ID,
            "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com",
        })

        self.assertEqual(result.returncode, 0, result.stderr)
        with open(self.path("dry-run", "config", "azure-dicom.json"), encoding="utf-8") as file:
            credentials = json.load(file)["AzureDicom"]["Credentials"]
        self.assertEqual(credentials, {"Type": "ManagedIdentity",
                                       "ClientId": fake_azure.DEFAULT_CLIENT_ID})

    def test_foreign_config_folder(self):
        folder = self.path("dry-run", "config")
        os.makedirs(folder)
        foreign = os.path.join(folder, "orthanc.json")
        with open(foreign, "w", encoding="utf-8") as output:
            output.write('{"Name": "not written by the entrypoint"}')
        result = self.run_entrypoint({
            "ORTHANC_AUTHENTICATION": "false",
            "AZURE_DICOM_ENABLE": "false",
        })

        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("ORTHANC_CONFIG_DIR", result.stderr)
        with open(foreign, encoding="utf-8") as kept:
            self.assertIn("not written by the entrypoint", kept.read())


    @unittest.skipUnless(yaml, YAML_REASON)
    @unittest.skipUnless(harness.only_loopback_interfaces(), ISOLATION_REASON)
    def test_compose_demo(self):
        # The demo profile's servers listen on the fixed ports of the compose file.
        compose = read_compose()
        servers = {}
        for name in ("demo-target", "demo-mirror"):
            environment = compose_environment(compose, name)
            credentials = None
            if environment.get("ORTHANC_AUTHENTICATION", "true") == "true":
                with open(environment["ORTHANC_USERS_FILE"], encoding="utf-8") as users:
                    line = [line for line in users.read().splitlines()
                            if line and not line.startswith("#")][0]
                credentials = tuple(line.split(":", 1))
            orthanc = EntrypointOrthanc(self.path(name), name, environment, credentials)
            orthanc.http_port = int(environment.get("ORTHANC_HTTP_PORT", DEFAULT_HTTP_PORT))
            orthanc.dicom_port = harness.free_port()
            servers[name] = self.add_orthanc(orthanc).start()

        upload = compose_environment(compose, "demo-upload")
        upload.update({"DEMO_HELPER": DEMO_HELPER, "DEMO_STUDIES": "1",
                       "PATH": "/usr/bin:/bin"})
        result = subprocess.run(["bash", DEMO_UPLOAD], env={**base_environment(), **upload},
                                capture_output=True, text=True, timeout=DEMO_TIMEOUT_SECONDS,
                                check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        mirrored = harness.list_sop_uids(servers["demo-mirror"])
        self.assertTrue(mirrored)
        self.assertLessEqual(mirrored, harness.list_sop_uids(servers["demo-target"]))
        for name, orthanc in servers.items():
            healthy = orthanc.run_healthcheck()
            self.assertEqual(healthy.returncode, 0, f"{name}: {healthy.stderr}")


if __name__ == "__main__":
    harness.main()
