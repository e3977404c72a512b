"""A PostgreSQL server of its own for a test, and Orthanc nodes that share it as their index.

PostgreSQLServer runs Debian's PostgreSQL 15 (package postgresql) from a new data folder. It
listens on a free port of 127.0.0.1 and has its unix socket in that folder, so it does not
depend on the cluster that Debian's package starts on port 5432. initdb rejects root, so as
root the server runs as the postgres system user (runuser), and as another user it runs as that
user. It is stopped by the PID of its postmaster.

orthanc_node() returns an Orthanc with Debian's orthanc-postgresql index plugin over that
server and a storage folder shared with the other nodes, as Orthanc scales out.
"""

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time

import harness

POSTGRESQL_BIN = "/usr/lib/postgresql/15/bin"
POSTGRESQL_USER = "postgres"
# Debian's orthanc-postgresql 4.0 installs an index plugin and a storage plugin. Only the index
# is loaded, so the files stay in the shared storage folder.
INDEX_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
PORT_ATTEMPTS = 3
# PostgreSQL's log line when another process took the port first.
PORT_IN_USE_MESSAGE = "could not bind IPv4 address"
# Connections of every node's index plugin, outbox and workers, with room to spare.
MAX_CONNECTIONS = 200


class PostgreSQLServer:
    """A PostgreSQL server in directory, with a role that has a password and its databases.

    settings are extra server parameters (postgres -c NAME=VALUE), for example
    {"fsync": "off"} for a test in which the server itself never crashes.
    """

    def __init__(self, directory, settings=None, password=None):
        self.directory = directory
        self.settings = dict(settings or {})
        self.data_directory = os.path.join(directory, "data")
        self.log_path = os.path.join(directory, "postgresql.log")
        self.port = None
        self.process = None
        self.log_file = None
        self.user = "orthanc"
        self.password = password or secrets.token_hex(16)
        self.system_user = POSTGRESQL_USER if os.geteuid() == 0 else None
        # The superuser is the system user that runs initdb, so that peer authentication on
        # the socket accepts psql.
        self.superuser = (POSTGRESQL_USER if self.system_user
                          else pwd.getpwuid(os.geteuid()).pw_name)

    def run_as_server_user(self, command):
        """Return command prefixed so that it runs as the server's system user."""
        if self.system_user is None:
            return list(command)
        return ["runuser", "-u", self.system_user, "--", *command]

    def prepare_directory(self):
        if not os.path.isfile(os.path.join(POSTGRESQL_BIN, "initdb")):
            raise RuntimeError(f"PostgreSQL not found in {POSTGRESQL_BIN}: install Debian's "
                               "postgresql package (Resources/install-dependencies.sh)")
        if self.system_user is not None and not is_initial_user_namespace():
            # unshare --user --map-root-user, as run-tests.sh does for a user other than root.
            raise RuntimeError("PostgreSQL cannot start in a user namespace that maps this "
                               "user to root: initdb rejects root there, and runuser cannot "
                               "switch to the postgres user. Run the tests as root.")
        os.makedirs(self.directory)
        if self.system_user is not None:
            account = pwd.getpwnam(self.system_user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            # The test's folder is private to root, and the server's user must reach its own.
            parent = os.path.dirname(os.path.abspath(self.directory))
            os.chmod(parent, os.stat(parent).st_mode | 0o111)
        os.chmod(self.directory, 0o700)

    def initialize(self):
        """Create the data folder: peer authentication on the socket, passwords over TCP."""
        self.prepare_directory()
        command = [os.path.join(POSTGRESQL_BIN, "initdb"), "--pgdata", self.data_directory,
                   "--username", self.superuser, "--auth-local", "peer", "--auth-host",
                   "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-sync"]
        result = subprocess.run(self.run_as_server_user(command), capture_output=True,
                                text=True, cwd=self.directory, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed with exit code {result.returncode}:\n"
                               f"{result.stdout}\n{result.stderr}")

    def start(self, databases=("orthanc",)):
        """Start the server, and on a new folder first initialize it.

        On a new folder it then creates the role and its databases. A folder that an earlier
        server left (a copy of its directory) keeps its role, whose password must be given.
        """
        created = not os.path.exists(os.path.join(self.data_directory, "PG_VERSION"))
        if created:
            self.initialize()
        for attempt in range(PORT_ATTEMPTS):
            self.port = harness.free_port()
            if self.start_once(last_attempt=attempt == PORT_ATTEMPTS - 1):
                break
        if created:
            self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
            for database in databases:
                self.psql(f"CREATE DATABASE {database} OWNER {self.user}")
        return self

    def start_once(self, last_attempt):
        """Start the postmaster; return False if its port was taken and another may be tried."""
        command = [os.path.join(POSTGRESQL_BIN, "postgres"), "-D", self.data_directory,
                   "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                   "-c", f"unix_socket_directories={self.directory}",
                   "-c", f"max_connections={MAX_CONNECTIONS}"]
        for name, value in self.settings.items():
            command += ["-c", f"{name}={value}"]

        self.log_file = open(self.log_path, "ab")
        offset = self.log_file.tell()
        # setpriv ends the server with the test (as harness.OrthancProcess does): once around
        # runuser, and once inside it because changing the user clears the parent-death signal.
        inner = ["setpriv", "--pdeathsig", "KILL", "--", *command]
        self.process = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", *self.run_as_server_user(inner)],
            stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.directory)

        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.release()
                log = self.read_log(offset)
                if PORT_IN_USE_MESSAGE in log and not last_attempt:
                    return False
                raise RuntimeError(f"PostgreSQL exited with code {code} at start-up:\n{log}")
            if self.is_ready():
                return True
            time.sleep(harness.POLL_INTERVAL_SECONDS)
        self.stop()
        raise RuntimeError(f"PostgreSQL did not accept connections within "
                           f"{START_TIMEOUT_SECONDS} s:\n{self.read_log(offset)}")

    def is_ready(self):
        result = subprocess.run([os.path.join(POSTGRESQL_BIN, "pg_isready"), "-q", "-h",
                                 self.directory, "-p", str(self.port)], check=False)
        return result.returncode == 0

    def psql(self, statement, database="postgres"):
        """Run one SQL statement as the superuser over the socket; return its rows as text."""
        command = [os.path.join(POSTGRESQL_BIN, "psql"), "-X", "-q", "-A", "-t",
                   "-v", "ON_ERROR_STOP=1", "-h", self.directory, "-p", str(self.port),
                   "-U", self.superuser, "-d", database, "-c", statement]
        result = subprocess.run(self.run_as_server_user(command), capture_output=True,
                                text=True, cwd=self.directory, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed on {statement!r}: {result.stderr.strip()}")
        return result.stdout

    def url(self, database):
        """Return the postgresql:// URL of a database for the role, over TCP."""
        return (f"postgresql://{self.user}:{self.password}@{harness.LOOPBACK}:{self.port}/"
                f"{database}")

    def index_section(self, database):
        """Return the "PostgreSQL" section of an Orthanc that shares the database as its index.

        "Lock": false lets several Orthanc processes use the same index at once.
        """
        return {"EnableIndex": True, "EnableStorage": False, "Host": harness.LOOPBACK,
                "Port": self.port, "Database": database, "Username": self.user,
                "Password": self.password, "Lock": False}

    def postmaster_pid(self):
        """Return the postmaster's PID from postmaster.pid, or None before it wrote the file."""
        try:
            with open(os.path.join(self.data_directory, "postmaster.pid"),
                      encoding="ascii") as pid_file:
                return int(pid_file.readline())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self):
        """Stop the server with a fast shutdown (SIGINT to its postmaster's PID)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            pid = self.postmaster_pid()
            os.kill(pid if pid is not None else self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.release()

    def release(self):
        code = self.process.returncode
        self.process = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        return code

    def read_log(self, offset=0):
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    def tail_log(self, lines=harness.LOG_TAIL_LINES):
        try:
            return "\n".join(self.read_log().splitlines()[-lines:])
        except FileNotFoundError:
            return f"(no log at {self.log_path})"

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)


def is_initial_user_namespace():
    """Return True unless this process runs in a user namespace (its uid_map is not the
    identity over every user ID)."""
    with open("/proc/self/uid_map", encoding="ascii") as uid_map:
        return uid_map.read().split() == ["0", "0", "4294967295"]


def orthanc_node(directory, name, server, index_database, storage, azure=None, plugins=(),
                 extra=None):
    """Return an Orthanc node (not started) with the PostgreSQL index and a shared storage.

    plugins are loaded after the index plugin, for example the mirror plugin.
    """
    settings = {"PostgreSQL": server.index_section(index_database),
                "StorageDirectory": storage, "IndexDirectory": storage}
    settings.update(extra or {})
    return harness.OrthancProcess(directory, name, plugins=[INDEX_PLUGIN, *plugins],
                                  azure=azure, extra=settings)
