"""Latency, measured and modelled: `measure` (timed passes, the reference clock, peak memory), `table` (the latency
table of a target device and how a search prices with it), `profile` (making a table); imports model and errors.
"""
from .measure import (
    MEASURED_METHOD,
    REFERENCE_CONFIG,
    RUNTIMES,
    LatencyStats,
    ReferenceClock,
    RelativeLatency,
    device_name,
    latency_stats,
    measure_latency,
    measured_latency,
    measured_latency_ms,
    pass_timer,
    peak_memory_bytes,
    reference_network,
    torch_threads,
)
from .profile import (
    CALIBRATION_NETWORKS,
    CALIBRATION_SEED,
    ProfileSettings,
    RelativeTimer,
    carrier_configs,
    library_versions,
    profile_space,
    sample_configs,
    timed_parts,
    typical_share,
)
from .table import (
    TABLE_FORMAT,
    LatencyModelError,
    LatencyTable,
    Part,
    cached_table,
    config_parts,
    file_fingerprint,
    latency_source,
    load_table,
    space_fingerprint,
    space_parts,
)

__all__ = ["CALIBRATION_NETWORKS", "CALIBRATION_SEED", "MEASURED_METHOD", "REFERENCE_CONFIG", "RUNTIMES",
           "TABLE_FORMAT", "LatencyModelError", "LatencyStats", "LatencyTable", "Part", "ProfileSettings",
           "ReferenceClock", "RelativeLatency", "RelativeTimer", "cached_table", "carrier_configs", "config_parts",
           "device_name", "file_fingerprint", "latency_source", "latency_stats", "library_versions", "load_table",
           "measure_latency", "measured_latency", "measured_latency_ms", "pass_timer", "peak_memory_bytes",
           "profile_space", "reference_network", "sample_configs", "space_fingerprint", "space_parts", "timed_parts",
           "torch_threads", "typical_share"]
