"""CPU time, memory and machine load of the benchmark's processes, read from /proc.

CPU times are user plus system seconds. Memory values are in bytes: VmRSS is the resident set
now, VmHWM its peak since the process started or since reset_peak_rss() (Linux 4.0 and later).
"""

import json
import os
import resource
import signal
import subprocess
import time
import urllib.request

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SINK_START_TIMEOUT_SECONDS = 10


def cpu_seconds(pid):
    """Return the user and system CPU seconds that process pid has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()
    # The command name in brackets may contain spaces, so the fields are counted after it.
    fields = text[text.rindex(")") + 2:].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / CLOCK_TICKS


def memory_bytes(pid):
    """Return {"VmRSS": bytes, "VmHWM": bytes} of process pid."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(value.split()[0]) * 1024
    return values


def set_scheduling_policy(pid, policy):
    """Set every thread of process pid to the scheduling policy (os.SCHED_IDLE or
    os.SCHED_OTHER). Threads that the process starts later inherit it from their creator."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setscheduler(int(task), policy, os.sched_param(0))
        except ProcessLookupError:
            pass  # the thread ended meanwhile


def reset_peak_rss(pid):
    """Set VmHWM of process pid back to its current VmRSS."""
    with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


def own_cpu_seconds():
    """Return the CPU seconds of this Python process, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_ticks():
    """Return (busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - idle, total


def load_average():
    """Return the 1, 5 and 15 minute load averages as a string, as `uptime` prints them."""
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        return ", ".join(loadavg.read().split()[:3])


class MachineLoad:
    """CPU use of the whole machine between start() and stop(), as a percentage of all CPUs."""

    def __init__(self):
        self.started = None
        self.busy_percent = None

    def start(self):
        self.started = machine_cpu_ticks()

    def stop(self):
        busy, total = machine_cpu_ticks()
        busy_before, total_before = self.started
        elapsed = total - total_before
        self.busy_percent = 100.0 * (busy - busy_before) / elapsed if elapsed > 0 else 0.0
        return self.busy_percent


class NullSink:
    """The benchmark's null STOW-RS receiver (Resources/Bench/NullSink.cpp) as a child process."""

    def __init__(self, binary, directory):
        self.binary = binary
        self.directory = directory
        self.process = None
        self.port = None
        self.log_file = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        os.makedirs(self.directory, exist_ok=True)
        port_file = os.path.join(self.directory, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.log_file = open(os.path.join(self.directory, "null-sink.log"), "ab")
        self.process = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", self.binary, "--port-file", port_file],
            stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + SINK_START_TIMEOUT_SECONDS
        while not os.path.exists(port_file):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the null sink {self.binary} did not start; see "
                                   f"{self.directory}/null-sink.log")
            time.sleep(0.05)
        with open(port_file, encoding="ascii") as text:
            self.port = int(text.read())
        return self

    def stats(self):
        """Return the sink's counters: Requests, Instances, Failed, Bytes, Connections."""
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as response:
            return json.load(response)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
