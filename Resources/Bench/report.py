"""Tables, goals and the Markdown page of the benchmark."""

import dataclasses
import statistics

import scenarios
import servers

MEGABYTE = 1e6
MIB = 1024 * 1024

# Data set names that the goals refer to (the keys of bench.py's specifications).
CT = "ct-512k"
SMALL = "small-2k"
MULTIFRAME = "multiframe"


def number(value, digits=1):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def megabytes(value):
    return "n/a" if not value else f"{value / MIB:,.0f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


class Results:
    """The records of one benchmark run, with lookups for the goals."""

    def __init__(self, datasets_by_name):
        self.datasets = datasets_by_name
        self.transfers = []
        self.ingestions = []
        self.latencies = []
        self.backlogs = []
        self.nodes = []
        self.listings = []

    def label(self, name):
        dataset = self.datasets.get(name)
        return dataset.spec.label if dataset else name

    def runs(self, method, target, dataset):
        """Return every run of a transfer method, data set and target, in the order run."""
        return [record for record in self.transfers
                if (record.method, record.target, record.dataset) == (method, target, dataset)]

    def transfer(self, method, target, dataset):
        """Return the fastest run that succeeded, else the first run, else None."""
        runs = self.runs(method, target, dataset)
        succeeded = [record for record in runs if record.ok]
        if succeeded:
            return max(succeeded, key=lambda record: record.instances_per_second)
        return runs[0] if runs else None

    def is_best_of_several(self, record):
        """Return whether record is the run that the goals use, among several runs."""
        runs = self.runs(record.method, record.target, record.dataset)
        return len(runs) > 1 and self.transfer(record.method, record.target,
                                               record.dataset) is record

    def peak_rss(self, method, target, dataset, highest):
        """Return the highest (or lowest) sender peak RSS of the runs that succeeded."""
        peaks = [record.sender_peak_rss for record in self.runs(method, target, dataset)
                 if record.ok]
        if not peaks:
            return None
        return max(peaks) if highest else min(peaks)

    def rate(self, method, target, dataset):
        record = self.transfer(method, target, dataset)
        return record.instances_per_second if record else None

    def median_rate(self, method, target, dataset):
        """Return the median rate of the runs that succeeded, or None."""
        rates = [record.instances_per_second for record in self.runs(method, target, dataset)
                 if record.ok]
        return statistics.median(rates) if rates else None

    def ingestion_rates(self, protocol, dataset, with_plugin):
        """Return the rates of the ingestion runs of one protocol, data set and configuration."""
        return [record.instances_per_second for record in self.ingestions
                if (record.protocol, record.dataset, record.with_plugin) ==
                (protocol, dataset, with_plugin) and record.instances_per_second]

    def best_ingestion(self, protocol, dataset, with_plugin):
        rates = self.ingestion_rates(protocol, dataset, with_plugin)
        return max(rates) if rates else None

    def median_ingestion(self, protocol, dataset, with_plugin):
        rates = self.ingestion_rates(protocol, dataset, with_plugin)
        return statistics.median(rates) if rates else None

    def reference_method(self, method):
        """Return the plugin method that a method is compared with in the ratio column."""
        if method in (scenarios.LUA_INSTANCE, scenarios.LUA_STABLE, scenarios.PLUGIN_INGEST):
            return scenarios.PLUGIN_INGEST
        return scenarios.PLUGIN_BACKFILL


def transfer_table(results):
    header = ["data set", "target", "method", "run", "instances", "seconds", "instances/s", "MB/s",
              "sender CPU s/GB", "total CPU s/GB", "sender peak RSS (MiB)",
              "plugin ÷ this", "machine busy % (others)", "note"]
    rows = []
    for record in results.transfers:
        reference = results.rate(results.reference_method(record.method), record.target,
                                 record.dataset)
        own = record.instances_per_second
        ratio = reference / own if reference and own else None
        is_reference = record.method == results.reference_method(record.method)
        note = record.error or record.note
        run = f"{record.run}, best" if results.is_best_of_several(record) else str(record.run)
        rows.append([
            results.label(record.dataset), record.target, record.method, run,
            f"{record.confirmed:,} of {record.expected:,}", number(record.seconds),
            number(own), number(record.megabytes_per_second),
            number(record.cpu_per_gigabyte(False)), number(record.cpu_per_gigabyte(True)),
            megabytes(record.sender_peak_rss), "" if is_reference else number(ratio, 2),
            f"{record.busy_percent:.0f} ({record.others_percent:.0f})",
            note.replace("|", "/").replace("\n", " ")[:200]])
    return table(header, rows)


def cpu_floor_table(results, cpus):
    """Return a table of the fastest runs of mirroring while ingesting and of Lua on stable
    studies, each with the time that its CPU work needs at least on this machine's CPUs."""
    header = ["data set", "target", "method", "seconds", "CPU seconds (source and target)",
              "CPU seconds (with the clients)", f"floor: that ÷ {cpus} CPUs (s)",
              "seconds ÷ floor"]
    rows = []
    for target in (servers.OrthancTarget.name, servers.SinkTarget.name):
        for method in (scenarios.PLUGIN_INGEST, scenarios.LUA_STABLE):
            record = results.transfer(method, target, CT)
            if record is None or not record.ok:
                continue
            servers_cpu = record.sender_cpu + record.receiver_cpu
            # The CPU time of the benchmark's processes (servers and clients) is the machine's
            # busy share less the share of other work.
            # NOTE: others_percent is clamped at 0, so where the counts disagree this is low.
            benchmark_cpu = max(servers_cpu, (record.busy_percent - record.others_percent) /
                                100 * record.seconds * cpus)
            floor = benchmark_cpu / cpus
            rows.append([results.label(CT), target, method, number(record.seconds),
                         number(servers_cpu), number(benchmark_cpu), number(floor),
                         number(record.seconds / floor, 2)])
    return table(header, rows) if rows else ""


def ingestion_table(results):
    header = ["data set", "protocol", "plugin", "instances", "seconds", "instances/s", "MB/s",
              "Orthanc CPU s/GB", "mirrored when the last store returned",
              "machine busy % (others)", "error"]
    rows = []
    for record in results.ingestions:
        cpu = record.orthanc_cpu / (record.bytes / 1e9) if record.seconds else None
        rows.append([
            results.label(record.dataset), record.protocol,
            "sending to the null sink" if record.with_plugin else "not loaded",
            f"{record.count:,}", number(record.seconds), number(record.instances_per_second),
            number(record.megabytes_per_second), number(cpu),
            f"{record.mirrored_at_end:,}" if record.with_plugin else "",
            f"{record.busy_percent:.0f} ({record.others_percent:.0f})", record.error[:200]])
    return table(header, rows)


def latency_table(results):
    header = ["target", "data set", "stores", "requested rate /s", "achieved rate /s",
              "p50 (s)", "p95 (s)", "max (s)", "machine busy %", "error"]
    rows = [[record.target, results.label(record.dataset), f"{record.count:,}",
             number(record.rate), number(record.achieved_rate), number(record.p50, 3),
             number(record.p95, 3), number(record.maximum, 3), f"{record.busy_percent:.0f}",
             record.error[:200]] for record in results.latencies]
    return table(header, rows)


def backlog_table(results):
    header = ["pending", "archive", "time to queue (s)", "queued/s", "RSS before (MiB)",
              "RSS with the backlog (MiB)", "peak RSS (MiB)", "RSS after a restart (MiB)",
              "error"]
    rows = []
    for record in results.backlogs:
        rate = record.pending / record.queue_seconds if record.queue_seconds else None
        rows.append([f"{record.pending:,}", f"{record.archive_count:,}",
                     number(record.queue_seconds), number(rate, 0), megabytes(record.rss_before),
                     megabytes(record.rss_after), megabytes(record.peak_rss),
                     megabytes(record.rss_after_restart), record.error[:200]])
    return table(header, rows)


@dataclasses.dataclass
class Goal:
    description: str
    measured: str
    passed: bool
    at_medians: str = ""  # the same ratio of the median runs, shown but not compared


def ratio_goal(description, numerator, denominator, minimum, medians=(None, None)):
    """Return a goal that passes when numerator / denominator ≥ minimum. The table shows the
    ratio of medians (the median rates of the same two sides) beside it, which decides nothing."""
    if not numerator or not denominator:
        return Goal(description, "not measured", False)
    ratio = numerator / denominator
    at_medians = ""
    if medians[0] and medians[1]:
        at_medians = f"{medians[0] / medians[1]:.2f} x ({medians[0]:,.1f} / {medians[1]:,.1f})"
    return Goal(description, f"{ratio:.2f} x ({numerator:,.1f} / {denominator:,.1f})",
                ratio >= minimum, at_medians)


def transfer_goal(results, description, numerator, denominator, minimum):
    """Return a ratio goal between two transfers, each a (method, target, data set)."""
    return ratio_goal(description, results.rate(*numerator), results.rate(*denominator),
                      minimum, (results.median_rate(*numerator),
                                results.median_rate(*denominator)))


def evaluate_goals(results, sections):
    """Return the goals of the sections run, each with the measured value and PASS or FAIL.

    A goal whose measurement failed is FAIL, with "not measured" as its value.
    """
    goals = [goal for section, goal in evaluate_all_goals(results) if section in sections]
    return goals


def evaluate_all_goals(results):
    """Return (section, Goal) pairs for every goal."""
    goals = []
    ct, small, multiframe = results.label(CT), results.label(SMALL), results.label(MULTIFRAME)
    targets = [servers.OrthancTarget.name, servers.SinkTarget.name]

    for target in targets:
        plugin = (scenarios.PLUGIN_INGEST, target, CT)
        goals.append(("transfers", transfer_goal(
            results,
            f"mirroring while ingesting {ct}, {target}: plugin ≥ 1.5 x Lua on stable studies",
            plugin, (scenarios.LUA_STABLE, target, CT), 1.5)))
        goals.append(("transfers", transfer_goal(
            results, f"mirroring while ingesting {ct}, {target}: plugin ≥ 30 x Lua per instance",
            plugin, (scenarios.LUA_INSTANCE, target, CT), 30)))

    for dataset in (CT, SMALL):
        for protocol in ("REST", "C-STORE"):
            goals.append(("ingestion", ratio_goal(
                f"ingestion of {results.label(dataset)} by {protocol}: with the plugin sending "
                "to the null sink ≥ 0.95 x without (instances/s, best of the repeats)",
                results.best_ingestion(protocol, dataset, True),
                results.best_ingestion(protocol, dataset, False), 0.95,
                (results.median_ingestion(protocol, dataset, True),
                 results.median_ingestion(protocol, dataset, False)))))

    for dataset in (CT, SMALL):
        label = results.label(dataset)
        for target in targets:
            backfill = (scenarios.PLUGIN_BACKFILL, target, dataset)
            goals.append(("transfers", transfer_goal(
                results, f"back-fill of {label}, {target}: plugin ≥ 1.2 x the DICOMweb STOW job",
                backfill, (scenarios.STOW_JOB, target, dataset), 1.2)))
            # curl's rate is what the target can ingest only where the target stores what it
            # receives. For the null sink, see describe_sink_upper_bound().
            if target == servers.OrthancTarget.name:
                goals.append(("transfers", transfer_goal(
                    results,
                    f"back-fill of {label}, {target}: plugin ≥ 0.85 x the curl upper bound",
                    backfill, (scenarios.CURL, target, dataset), 0.85)))
        goals.append(("transfers", transfer_goal(
            results,
            f"back-fill of {label}: plugin to the null sink ≥ 3 x the rate the Orthanc target "
            "allows (curl upper bound to the Orthanc target)",
            (scenarios.PLUGIN_BACKFILL, servers.SinkTarget.name, dataset),
            (scenarios.CURL, servers.OrthancTarget.name, dataset), 3)))

    for record in results.latencies:
        description = (f"store-to-mirrored p95 < 2 s at {record.rate:.0f} stores/s, "
                       f"{record.target}")
        if record.error:
            goal = Goal(description, f"not measured: {record.error[:100]}", False)
        else:
            goal = Goal(description, f"p95 {record.p95:.3f} s", record.p95 < 2.0)
        goals.append(("latency", goal))

    # Of several runs, the plugin's largest peak is compared with the STOW job's smallest.
    for dataset, label in ((CT, ct), (SMALL, small), (MULTIFRAME, multiframe)):
        sink = servers.SinkTarget.name
        backfill = results.peak_rss(scenarios.PLUGIN_BACKFILL, sink, dataset, highest=True)
        stow = results.peak_rss(scenarios.STOW_JOB, sink, dataset, highest=False)
        description = (f"peak RSS of the sending Orthanc, back-fill of {label} to the null "
                       "sink ≤ 0.5 x the STOW job's")
        if not backfill or not stow:
            goals.append(("transfers", Goal(description, "not measured", False)))
            continue
        ratio = backfill / stow
        goals.append(("transfers", Goal(
            description, f"{ratio:.2f} x ({megabytes(backfill)} / {megabytes(stow)} MiB)",
            ratio <= 0.5)))

    backlogs = sorted((record for record in results.backlogs if not record.error),
                      key=lambda record: record.pending)
    description = "RSS with the large backlog pending within 50 MB of the RSS with the small one"
    if len(backlogs) >= 2:
        small_backlog, large_backlog = backlogs[0], backlogs[-1]
        growth = large_backlog.rss_after - small_backlog.rss_after
        goals.append(("backlog", Goal(
            description.replace("the large backlog", f"{large_backlog.pending:,}")
            .replace("the small one", f"{small_backlog.pending:,}"),
            f"{growth / MEGABYTE:+,.1f} MB ({megabytes(large_backlog.rss_after)} vs "
            f"{megabytes(small_backlog.rss_after)} MiB)", growth <= 50 * MEGABYTE)))
    else:
        goals.append(("backlog", Goal(description, "not measured", False)))
    return goals


def describe_sink_upper_bound(results):
    """Return a Markdown paragraph with the back-fill ÷ curl ratios against the null sink, which
    are not goals, and Orthanc's time to list each archive. Return "" when no data set has a
    successful back-fill and curl run there."""
    sink = servers.SinkTarget.name
    ratios = []
    for dataset in (CT, SMALL):
        plugin = results.transfer(scenarios.PLUGIN_BACKFILL, sink, dataset)
        curl = results.transfer(scenarios.CURL, sink, dataset)
        if not (plugin and curl and plugin.ok and curl.ok):
            continue
        plugin_rate, curl_rate = plugin.instances_per_second, curl.instances_per_second
        text = (f"{results.label(dataset)}: {plugin_rate / curl_rate:.2f} x ({plugin_rate:,.1f} / "
                f"{curl_rate:,.1f}), curl's run {curl.seconds:.2f} s")
        listing = next((record for record in results.listings
                        if record.dataset == dataset and not record.error), None)
        if listing:
            text += (f", Orthanc's listing of the archive {listing.seconds:.2f} s "
                     f"({listing.seconds / curl.seconds:.1f} x curl's run)")
        ratios.append(text)
    if not ratios:
        return ""
    return ("Against the null sink, the back-fill ÷ curl is shown but is not a goal. There curl "
            "posts bodies built before the run to a server that stores nothing, so its rate is "
            "that of loopback and the sink's parser, not what a target can ingest. A back-fill "
            "from Orthanc first has to find each instance's UIDs, which curl does not. The "
            "listing time given with each ratio is Orthanc answering `GET /instances?expand` "
            "(every instance with its UIDs, in one request) for the archive alone, on a new "
            f"Orthanc without plugins (the fastest of {scenarios.LISTING_RUNS}).\n\n" +
            "\n".join(f"- {ratio}" for ratio in ratios))


def goals_table(goals):
    rows = [[goal.description, goal.measured, goal.at_medians, "PASS" if goal.passed else "FAIL"]
            for goal in goals]
    return table(["goal", "measured", "at the medians (not a goal)", "result"], rows)
