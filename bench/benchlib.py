"""What the Python benchmarks share: progress lines, free ports, CPU seconds from /proc,
Kafka topics of their own, and our services' Prometheus metrics (counters and histogram
quantiles). Imported by bench/archiver_bench.py and bench/graph_writer_bench.py."""
import os
import socket
import sys
import uuid

import requests
from confluent_kafka.admin import AdminClient, NewTopic

def say(*a):
    print("==>", *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU seconds of a process on this machine, None when not readable."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def diff(a, b):
    return None if a is None or b is None else round(b - a, 2)


def create_topic(bootstrap, prefix, partitions):
    """A fresh topic prefix-<random> of that many partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(30)
    return name


def delete_topic(bootstrap, name):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.delete_topics([name]).values():
        try:
            f.result(30)
        except Exception:  # noqa: BLE001 - cleanup
            pass


def metric_lines(port):
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines()


def metric(lines, name, labels=""):
    total = 0.0
    for line in lines:
        if line.startswith(name) and line[len(name)] in " {" and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_quantiles(lines, name):
    """p50/p99 (ms) of one of our histograms, interpolated within its buckets, and the
    mean."""
    buckets = []
    for line in lines:
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le),
                            float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out = {"count": int(total)}
    for q in (0.5, 0.99):
        out[str(q)] = None
        want, lo_bound, lo_count = q * total, 0.0, 0.0
        for bound, count in buckets if total else []:
            if count >= want:
                top = lo_bound if bound == float("inf") else bound
                frac = (want - lo_count) / (count - lo_count) if count > lo_count else 1
                out[str(q)] = round((lo_bound + frac * (top - lo_bound)) * 1000, 1)
                break
            lo_bound, lo_count = bound, count
    s = metric(lines, name + "_sum")
    out["mean"] = round(1000 * s / total, 1) if total else None
    return out
