"""Evaluation under named protocols (`nyu-eigen`, `densedepth`, `seed`, KITTI, zero-shot, `none`).

>>> result = evaluate("runs/x/model", {"type": "synthetic", "num_samples": 8}, protocol="none")
>>> print(format_table(result))
"""

from .core import EvalResult, evaluate, evaluate_predictions, resize_map
from .multi import published, summary_table
from .output import format_table, result_to_json, write_result
from .protocols import PROTOCOLS, Protocol, describe, get_protocol, protocol_table, register_protocol

__all__ = [
    "EvalResult", "evaluate", "evaluate_predictions", "resize_map",
    "format_table", "result_to_json", "write_result", "PROTOCOLS", "Protocol", "describe", "get_protocol",
    "protocol_table", "published", "summary_table", "register_protocol",
]
