"""Prometheus instruments, in a registry per application instance.

Under ``jewelry-forecast serve`` every worker writes its values to files in the directory
named by ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when the
library is first imported: see app/cli.py), and a scrape adds up the files of all workers,
so that totals never go back whichever worker answers. Without that variable (in process,
in tests) the values live in the instance's own registry.
"""

import os
from http import HTTPMethod

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from app.config import METRICS_DIR_VARIABLE
from app.processes import running

# Every label value comes from a fixed set: a client's made-up method must not add a series.
KNOWN_METHODS = frozenset(HTTPMethod)
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "unmatched"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = os.environ.get(METRICS_DIR_VARIABLE)
        self.requests = Counter(
            "jewelry_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jewelry_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.predictions = Counter(
            "jewelry_predictions_total", "Prices quoted.", registry=self.registry
        )
        self.training_runs = Counter(
            "jewelry_training_runs_total",
            "Training runs by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.sales_ingested = Counter(
            "jewelry_sales_ingested_total",
            "Sales stored, by how they arrived.",
            ["via"],
            registry=self.registry,
        )
        self.imports_running = Gauge(
            "jewelry_csv_imports_running",
            "CSV imports running (each worker runs at most JEWELRY_MAX_CONCURRENT_IMPORTS).",
            registry=self.registry,
            # With metrics shared between worker processes: the sum over the live ones.
            multiprocess_mode="livesum",
        )
        self.active_model = Gauge(
            "jewelry_active_model_version",
            "The model version the worker answering the scrape serves (0: none).",
            registry=self.registry,
            # The scraping worker sets it just before collecting, so its value is the newest.
            multiprocess_mode="livemostrecent",
        )
        # A method label, a route template and a status: a few dozen sets, all the service's.
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def count_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request and its latency. Each label set's series are kept once found:
        finding them (prometheus_client's labels()) took twice as long as counting."""
        key = (method, route, status)
        if (series := self._request_series.get(key)) is None:
            series = self._request_series[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text of this instance, or of all workers in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        self._forget_dead_workers()
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiprocess_dir)
        return generate_latest(merged)

    def _forget_dead_workers(self) -> None:
        """A worker killed outright (SIGKILL, out of memory) never says it stopped, and uvicorn
        tells nobody when it replaces one: drop the live gauges of processes that are gone."""
        assert self.multiprocess_dir is not None
        for name in os.listdir(self.multiprocess_dir):
            if name.startswith("gauge_live") and name.endswith(".db"):
                pid = int(name.removesuffix(".db").rsplit("_", 1)[1])
                if not running(pid):
                    mark_process_dead(pid, self.multiprocess_dir)

    def worker_stopped(self) -> None:
        """Drop this worker's live gauge values: a stopped worker no longer serves a model."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)
