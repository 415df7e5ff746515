"""Evaluation: versioned protocols (``protocol``), the metrics (``metrics``), running every method
through the same cases (``runner``) and the report (``report``). ``fillgap eval`` calls ``evaluate``."""

from .protocol import (
    Case,
    Protocol,
    available_protocols,
    bucket_label,
    images_checksum,
    load_images,
    load_protocol,
    make_cases,
    masks_checksum,
)
from .report import render_markdown, summary_line, write_outputs
from .runner import (
    EvalRun,
    build_methods,
    environment,
    evaluate,
    parse_method_list,
    peer_names,
    registry_method,
    run_protocol,
)

__all__ = [
    "Case",
    "Protocol",
    "available_protocols",
    "bucket_label",
    "images_checksum",
    "load_images",
    "load_protocol",
    "make_cases",
    "masks_checksum",
    "render_markdown",
    "summary_line",
    "write_outputs",
    "EvalRun",
    "build_methods",
    "environment",
    "evaluate",
    "parse_method_list",
    "peer_names",
    "registry_method",
    "run_protocol",
]
