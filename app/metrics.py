"""Prometheus instruments, in a registry per application instance."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            "The model version this worker last served (0: none).",
            registry=self.registry,
        )
