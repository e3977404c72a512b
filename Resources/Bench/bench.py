#!/usr/bin/python3
"""Measure the plugin against Orthanc's DICOMweb STOW job, Lua auto-routing and curl.

Resources/bench.sh builds the plugin and the null sink, then runs this script in a network
namespace where only loopback exists. It prints the tables and writes the Markdown page.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import datasets
import nodes
import page
import processes
import report
import scenarios
import servers

WORK_MARKER = ".orthanc-azure-dicom-bench"

FULL = {
    report.CT: datasets.DataSetSpec("ct-512k", "512 KB", 2000, 10, 2, 512, 512),
    report.SMALL: datasets.DataSetSpec("small-2k", "2 KB", 20000, 20, 2, 32, 16),
    report.MULTIFRAME: datasets.DataSetSpec("multiframe", "200 MB multi-frame", 1, 1, 1,
                                            512, 512, frames=400),
    "backlog": datasets.DataSetSpec("backlog-2k", "2 KB (backlog)", 100000, 100, 2, 32, 16),
}

QUICK = {
    report.CT: datasets.DataSetSpec("ct-512k", "512 KB", 200, 2, 2, 512, 512),
    report.SMALL: datasets.DataSetSpec("small-2k", "2 KB", 2000, 4, 2, 32, 16),
    report.MULTIFRAME: datasets.DataSetSpec("multiframe", "20 MB multi-frame", 1, 1, 1,
                                            512, 512, frames=40),
    "backlog": datasets.DataSetSpec("backlog-2k", "2 KB (backlog)", 10000, 10, 2, 32, 16),
}

SMALL_BACKLOG = 1000
LATENCY_RATE = 20
# Runs of each configuration in the ingestion section, whose goals take the best. On a shared
# 2-core machine, back-to-back runs of the same configuration differed by up to 40 %, in rate and
# in Orthanc's CPU time (2 KB by C-STORE without the plugin: 414 to 672 instances/s). The best
# of more runs varies less from one benchmark to the next. The 512 KB runs repeat most often,
# because they last about 2.5 s by REST: they vary the most and cost the least to repeat.
INGESTION_REPEATS = {report.CT: 8, report.SMALL: 6}
SECTIONS = ("transfers", "ingestion", "latency", "backlog", "nodes")
TRANSFER_DATASETS = {"512k": report.CT, "2k": report.SMALL, "multiframe": report.MULTIFRAME}
TRANSFER_TARGETS = ("orthanc", "sink")
TRANSFER_METHODS = ("plugin-ingest", "plugin-backfill", "stow-job", "lua-stable",
                    "lua-instance", "curl")


def log(message):
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def read_machine():
    """Return the CPU count, memory and CPU model of this machine."""
    model = platform.processor() or "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        memory_kb = int(meminfo.readline().split()[1])
    return {"CPUs": os.cpu_count(), "Memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
            "Model": model, "Kernel": platform.release()}


def prepare_work_folder(work):
    """Create the work folder, or check that an existing one was made by this script."""
    if os.path.isdir(work) and os.listdir(work) and \
            not os.path.exists(os.path.join(work, WORK_MARKER)):
        raise SystemExit(f"error: {work} exists and was not made by the benchmark: choose "
                         "another with --work")
    os.makedirs(work, exist_ok=True)
    open(os.path.join(work, WORK_MARKER), "a", encoding="ascii").close()
    shutil.rmtree(os.path.join(work, "runs"), ignore_errors=True)


def mount_runs_in_memory(work):
    """Mount a tmpfs over the runs folder, where every run keeps its servers' storage, indexes,
    outboxes and logs.

    Every run deletes its storage, and on the disk where the benchmark was first run (ext4
    without a journal) the next run then created its files more slowly. In a profile of Orthanc
    storing 20,000 files of 2 KB right after another run, 4.5 s of CPU time went to ext4's inode
    allocation (the kernel functions recently_deleted, find_inode_bit and find_get_block_common).
    The first run of a benchmark stored them 15 to 34 % faster than the later runs of the same
    configuration. A tmpfs has no such cost, and no writeback competes with the servers.
    """
    runs = os.path.join(work, "runs")
    os.makedirs(runs, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "bench-runs", runs], check=True)


def print_record(record):
    if isinstance(record, scenarios.Transfer):
        rate = record.instances_per_second
        text = record.error or (f"{rate:,.1f} instances/s, {record.megabytes_per_second:,.1f} "
                                f"MB/s in {record.seconds:.1f} s {record.note}")
        run = f" (run {record.run})" if record.run > 1 else ""
        log(f"  {record.dataset}, {record.target}, {record.method}{run}: {text}")
    elif isinstance(record, scenarios.Listing):
        text = record.error or f"{record.count:,} instances in {record.seconds:.2f} s"
        log(f"  {record.dataset}, Orthanc listing the archive (GET /instances?expand): {text}")
    elif isinstance(record, scenarios.Ingestion):
        text = record.error or f"{record.instances_per_second:,.1f} instances/s"
        plugin = "with the plugin" if record.with_plugin else "without the plugin"
        log(f"  ingestion of {record.dataset} by {record.protocol} {plugin}: {text}")


def run_transfers(context, results, data, bodies, sink, choice):
    """Run every transfer method that choice (the parsed options) selects, the short ones
    scenarios.TRANSFER_RUNS times (once with --quick)."""
    for name, key in TRANSFER_DATASETS.items():
        if name not in choice.datasets:
            continue
        dataset = data[key]
        archive = scenarios.prepare_archive(context, dataset)
        if "sink" in choice.targets and {"curl", "plugin-backfill"} <= set(choice.methods):
            listing = scenarios.measure_listing(context, dataset, archive)
            results.listings.append(listing)
            print_record(listing)
        targets = {"orthanc": servers.OrthancTarget(), "sink": servers.SinkTarget(sink)}
        for target_name in choice.targets:
            target = targets[target_name]
            log(f"{dataset.spec.label} to the {target.name}")
            first_runs = {}  # method option -> its first Transfer record
            measure = {
                "plugin-ingest": lambda: scenarios.run_plugin_ingest(context, dataset, target),
                "plugin-backfill": lambda: scenarios.run_plugin_backfill(context, dataset,
                                                                         archive, target),
                "stow-job": lambda: scenarios.run_stow_job(context, dataset, archive, target),
                "lua-stable": lambda: scenarios.run_lua(context, dataset, target, stable=True),
                "lua-instance": lambda: scenarios.run_lua(context, dataset, target,
                                                          stable=False),
                "curl": lambda: scenarios.run_curl(context, dataset, bodies[key], target),
            }
            methods = [method for method in TRANSFER_METHODS if method in choice.methods]
            runs = {method: 1 for method in methods}
            run = 1
            while any(run <= count for count in runs.values()):
                for method in methods:
                    if run > runs[method]:
                        continue
                    record = measure[method]()
                    record.run = run
                    results.transfers.append(record)
                    first_runs.setdefault(method, record)
                    print_record(record)
                if run == 1 and not choice.quick:
                    runs = count_runs(first_runs)
                run += 1


def is_repeated(record):
    """Return whether a transfer whose first run is record runs again."""
    return (record.ok and not record.partial and
            record.seconds < scenarios.REPEATED_TRANSFER_MAX_SECONDS)


def count_runs(first_runs):
    """Return how many runs each method gets in all, from its first run (first_runs: method
    option -> Transfer record). The repeated methods of one of scenarios.COMPARED_METHODS get
    the same number."""
    runs = {method: scenarios.TRANSFER_RUNS if is_repeated(record) else 1
            for method, record in first_runs.items()}
    for compared in scenarios.COMPARED_METHODS:
        repeated = [method for method in compared
                    if method in first_runs and is_repeated(first_runs[method])]
        if repeated and all(first_runs[method].seconds < scenarios.SHORT_TRANSFER_MAX_SECONDS
                            for method in repeated):
            for method in repeated:
                runs[method] = scenarios.SHORT_TRANSFER_RUNS
    return runs


def run_ingestion(context, results, data, quick, choice):
    for key in (report.CT, report.SMALL):
        if key not in ingestion_datasets(choice):
            continue
        dataset = data[key]
        # One unmeasured run of each configuration first. With the runs on disk, the first run
        # of the 2 KB section (by REST without the plugin) was 15 to 34 % faster than every later
        # run of the same configuration (see mount_runs_in_memory). The best of the repeats took
        # it, and the warm-up keeps the runs comparable with --runs-on-disk.
        if not quick:
            for protocol in ("REST", "C-STORE"):
                for with_plugin in (False, True):
                    scenarios.run_ingestion(context, dataset, protocol, with_plugin)
            log(f"  ingestion of {dataset.spec.name}: warm-up runs done")
        for repeat in range(1 if quick else INGESTION_REPEATS[key]):
            # The order alternates, so that a drift of the machine's load favours neither.
            order = (False, True) if repeat % 2 == 0 else (True, False)
            for protocol in ("REST", "C-STORE"):
                for with_plugin in order:
                    record = scenarios.run_ingestion(context, dataset, protocol, with_plugin)
                    results.ingestions.append(record)
                    print_record(record)


def run_latency(context, results, data, sink, count):
    dataset = data[report.CT]
    for target in (servers.OrthancTarget(), servers.SinkTarget(sink)):
        record = scenarios.run_latency(context, dataset, target, min(count, dataset.count),
                                       LATENCY_RATE)
        results.latencies.append(record)
        log(f"  latency to the {target.name}: "
            f"{record.error or f'p50 {record.p50:.3f} s, p95 {record.p95:.3f} s'}")


def run_backlog(context, results, data):
    dataset = data["backlog"]
    archive = scenarios.prepare_archive(context, dataset)
    for pending in (min(SMALL_BACKLOG, dataset.count), dataset.count):
        record = scenarios.run_backlog(context, archive, dataset.count, pending)
        results.backlogs.append(record)
        summary = record.error or (f"queued in {record.queue_seconds:.1f} s, RSS "
                                   f"{record.rss_after / 2**20:.0f} MiB")
        log(f"  backlog of {pending}: {summary}")


RECORD_TYPES = {"transfers": scenarios.Transfer, "ingestions": scenarios.Ingestion,
                "latencies": scenarios.Latency, "backlogs": scenarios.Backlog,
                "listings": scenarios.Listing,
                "nodes": nodes.NodesRun}


def save_results(path, run, results):
    """Write the run's details and every record as JSON, which --render reads again."""
    run_json = dataclasses.asdict(run)
    run_json["started"] = run.started.isoformat()
    run_json["finished"] = run.finished.isoformat()
    saved = {
        "Run": run_json,
        "DataSets": {key: {"Spec": datasets.spec_to_json(dataset.spec), "Count": dataset.count,
                           "TotalBytes": dataset.total_bytes}
                     for key, dataset in results.datasets.items()},
    }
    for name in RECORD_TYPES:
        saved[name] = [dataclasses.asdict(record) for record in getattr(results, name)]
    with open(path, "w", encoding="utf-8") as output:
        json.dump(saved, output, indent=1)


def load_results(path):
    """Read a results file of save_results(); return (RunInfo, Results)."""
    with open(path, encoding="utf-8") as source:
        saved = json.load(source)
    run_json = dict(saved["Run"])
    run_json["started"] = datetime.datetime.fromisoformat(run_json["started"])
    run_json["finished"] = datetime.datetime.fromisoformat(run_json["finished"])
    summaries = {key: datasets.DataSetSummary(datasets.DataSetSpec(**entry["Spec"]),
                                              entry["Count"], entry["TotalBytes"])
                 for key, entry in saved["DataSets"].items()}
    results = report.Results(summaries)
    for name, record_type in RECORD_TYPES.items():
        setattr(results, name, [record_type(**record) for record in saved.get(name, [])])
    return page.RunInfo(**run_json), results


def write_report(run, results, output_path):
    """Write the page, print the tables, and return the goals."""
    goals = report.evaluate_goals(results, run.sections)
    with open(output_path, "w", encoding="utf-8") as output:
        output.write(page.render(run, results, goals))
    print()
    print(page.render_tables(results, goals, run.machine["CPUs"]))
    return goals


def parse_options():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller data sets and one repeat, for a trial run")
    parser.add_argument("--plugin", help="path of libOrthancAzureDicom.so")
    parser.add_argument("--sink", help="path of the null-sink binary")
    parser.add_argument("--work", default="/tmp/orthanc-azure-dicom-bench",
                        help="folder of the data sets, archives and runs (default %(default)s)")
    parser.add_argument("--output", required=True, help="Markdown page to write")
    parser.add_argument("--commit", default="unknown",
                        help="the plugin's git commit, as the page shows it")
    parser.add_argument("--max-run-seconds", type=float,
                        help="time limit of one transfer, after which its rate is computed "
                             "from the instances confirmed so far (default 300, 60 with "
                             "--quick)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="run only these sections (default: all)")
    parser.add_argument("--datasets", nargs="+", choices=list(TRANSFER_DATASETS),
                        default=list(TRANSFER_DATASETS),
                        help="transfer and ingest only these data sets (default: all)")
    parser.add_argument("--targets", nargs="+", choices=TRANSFER_TARGETS,
                        default=list(TRANSFER_TARGETS),
                        help="transfer only to these targets (default: both)")
    parser.add_argument("--methods", nargs="+", choices=TRANSFER_METHODS,
                        default=list(TRANSFER_METHODS),
                        help="run only these transfer methods (default: all)")
    parser.add_argument("--own-mount-namespace", action="store_true",
                        help="this process runs in a mount namespace of its own, where a mount "
                             "ends with it (Resources/bench.sh runs it so)")
    parser.add_argument("--runs-on-disk", action="store_true",
                        help="keep the runs folder (the servers' storage, indexes and logs) in "
                             "the work folder on disk instead of a tmpfs")
    parser.add_argument("--render", metavar="RESULTS",
                        help="measure nothing: write the page again from the results.json of "
                             "an earlier run")
    options = parser.parse_args()
    if not options.render and (not options.plugin or not options.sink):
        parser.error("--plugin and --sink are required unless --render is given")
    return options


def ingestion_datasets(options):
    """Return the keys of the data sets that the ingestion section stores."""
    return {TRANSFER_DATASETS[name] for name in options.datasets} & {report.CT, report.SMALL}


def needed_datasets(options):
    """Return the keys of the data sets that the selected sections use."""
    needed = set()
    if "transfers" in options.only:
        needed.update(TRANSFER_DATASETS[name] for name in options.datasets)
    if "ingestion" in options.only:
        needed.update(ingestion_datasets(options))
    if "latency" in options.only:
        needed.add(report.CT)
    if "backlog" in options.only:
        needed.add("backlog")
    if "nodes" in options.only:
        needed.update(nodes.DATASETS)
    return needed


def main():
    options = parse_options()
    if options.render:
        run, results = load_results(options.render)
        write_report(run, results, options.output)
        log(f"wrote {options.output} from {options.render}")
        return 0

    specs = QUICK if options.quick else FULL
    max_run_seconds = options.max_run_seconds or (60 if options.quick else 300)
    work = os.path.abspath(options.work)
    prepare_work_folder(work)
    runs_in_memory = options.own_mount_namespace and not options.runs_on_disk
    if runs_in_memory:
        mount_runs_in_memory(work)
    elif not options.runs_on_disk:
        log("the runs folder stays on disk: without --own-mount-namespace (which "
            "Resources/bench.sh gives), a tmpfs mounted over it would outlive the benchmark")

    machine = read_machine()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = processes.load_average()
    log(f"{machine['CPUs']} CPUs, {machine['Memory']}, {machine['Model']}; load average "
        f"{load_before}")

    data = {key: datasets.generate(spec, os.path.join(work, "data"), log)
            for key, spec in specs.items() if key in needed_datasets(options)}
    bodies = {key: datasets.build_bodies(data[key], os.path.join(work, "data"),
                                         servers.MAX_INSTANCES_PER_REQUEST,
                                         servers.MAX_REQUEST_SIZE_MB * 1024 * 1024, log)
              for key in data if key in TRANSFER_DATASETS.values()}

    sink = processes.NullSink(options.sink, os.path.join(work, "sink")).start()
    context = scenarios.Context(options.plugin, work, sink, max_run_seconds, log)
    results = report.Results(data)
    try:
        if "transfers" in options.only:
            run_transfers(context, results, data, bodies, sink, options)
        if "ingestion" in options.only:
            run_ingestion(context, results, data, options.quick, options)
        if "latency" in options.only:
            run_latency(context, results, data, sink, 200 if options.quick else 1200)
        if "backlog" in options.only:
            run_backlog(context, results, data)
        if "nodes" in options.only:
            nodes.run_section(context, results, data, sink, log)
    finally:
        sink.stop()

    load_after = processes.load_average()
    finished = datetime.datetime.now(datetime.timezone.utc)
    run = page.RunInfo(quick=options.quick, machine=machine, commit=options.commit,
                       versions=context.versions, started=started, finished=finished,
                       load_before=load_before, load_after=load_after,
                       max_run_seconds=max_run_seconds, latency_rate=LATENCY_RATE,
                       sections=options.only, runs_in_memory=runs_in_memory)
    results_path = os.path.join(work, "results.json")
    save_results(results_path, run, results)
    goals = write_report(run, results, options.output)
    passed = sum(1 for goal in goals if goal.passed)
    log(f"{passed} of {len(goals)} goals passed; load average {load_after}; wrote "
        f"{options.output} and {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
