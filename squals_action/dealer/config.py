"""The Dealer's files: its JSON config, the routing it last switched to, and atomic writes for both.

A state directory holds ``config.json`` (mode 0600: it carries the admin token), ``routing.json`` (the last
weights/upstreams set through the admin endpoint, so a restarted daemon comes back on the same switch),
``tallies/`` (the journal and snapshots of :mod:`~squals_action.dealer.journal`), ``routing.board`` (the
routing in force, shared with the worker), ``dealer.pid``, ``dealer.json`` (pid, admin protocol, bound ports,
URLs, worker pids), ``dealer.port`` and ``dealer.lock`` (of :mod:`.daemon`) and ``dealer.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from squals_action.dealer.bucketing import normalise_weights
from squals_action.dealer.interface import DealerConfig, DealerError
from squals_action.manifest.model import DEFAULT_EVENT_CAP

CONFIG_FILE = "config.json"
ROUTING_FILE = "routing.json"
TALLY_DIR = "tallies"
#: How fast a starting Dealer reads its tallies back, at worst (10 M units, 234 MB: 24-49 s on a busy 2-core
#: machine): start_dealer and the supervisor wait that much longer for a Dealer with tallies on disk.
RECOVERY_BYTES_PER_S = 4 << 20
PID_FILE = "dealer.pid"
ENDPOINT_FILE = "dealer.json"
LOG_FILE = "dealer.log"
#: The worker count of a Dealer whose config does not set one (else one per core).
WORKERS_ENV = "SQUALS_DEALER_WORKERS"
#: The largest per-unit cap of an event kind (the squals file's schema says the same).
MAX_CAP = 1_000_000


def journal_dir(state_dir: Path, worker: int) -> Path:
    """Worker ``worker``'s journal: ``tallies/`` for worker 0 (where a one-worker Dealer always kept it),
    ``tallies/w<N>/`` for the others."""
    return state_dir / TALLY_DIR if worker == 0 else state_dir / TALLY_DIR / f"w{worker}"


def tally_bytes(state_dir: Path) -> int:
    """Bytes of journal and snapshots in ``state_dir`` (every worker's): at most what a starting worker reads
    back."""
    total = 0
    for directory in (state_dir / TALLY_DIR, *sorted((state_dir / TALLY_DIR).glob("w[0-9]*"))):
        with contextlib.suppress(OSError):
            total += sum(entry.stat().st_size for entry in os.scandir(directory) if entry.is_file())
    return total


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write via a temporary file in the same directory, fsync, rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_upstreams(upstreams: Mapping[str, str]) -> dict[str, str]:
    """Upstream names must be short identifiers and URLs plain http(s) origins with no query or fragment."""
    if not upstreams:
        raise DealerError("the Dealer needs at least one upstream")
    out: dict[str, str] = {}
    for name, url in upstreams.items():
        if (
            not isinstance(name, str)
            or not name
            or len(name) > 64
            or not all(c.isalnum() or c in "-_." for c in name)
        ):
            raise DealerError(f"upstream name {name!r} must be 1-64 letters, digits, '-', '_' or '.'")
        if not isinstance(url, str):
            raise DealerError(f"upstream {name!r}: URL must be a string, got {url!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise DealerError(f"upstream {name!r}: expected an http(s)://host:port URL, got {url!r}")
        out[name] = url.rstrip("/")
    return out


def _rule_to_json(cap: int) -> dict[str, Any]:
    return {"count": "once"} if cap == 1 else {"count": "all", "cap": cap}


def event_caps(raw: Any) -> dict[str, int]:
    """``{kind: {"count": "once"} | {"count": "all", "cap": N}}`` as per-unit caps (once: 1; all without a
    cap: DEFAULT_EVENT_CAP)."""
    if not isinstance(raw, dict):
        raise ValueError("events must be an object of event kind -> {count, cap}")
    caps: dict[str, int] = {}
    for name, rule in raw.items():
        count = rule.get("count", "once") if isinstance(rule, dict) else None
        if count not in ("once", "all"):
            raise ValueError(
                f"events.{name}: expected {{count: once}} or {{count: all, cap: N}}, got {rule!r}"
            )
        cap = rule.get("cap", 1 if count == "once" else DEFAULT_EVENT_CAP)
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_CAP:
            raise ValueError(f"events.{name}.cap must be an integer from 1 to {MAX_CAP}, got {cap!r}")
        if count == "once" and cap != 1:
            raise ValueError(f"events.{name}: a cap goes with count: all")
        caps[str(name)] = cap
    return caps


def config_to_json(config: DealerConfig) -> dict[str, Any]:
    return {
        "upstreams": [{"name": k, "url": v} for k, v in config.upstreams.items()],
        "weights": dict(config.weights),
        "unit": {"kind": config.unit_kind, "name": config.unit_name},
        "seed": config.seed,
        "host": config.host,
        "port": config.port,
        "admin_port": config.admin_port,
        "token": config.token,
        "connect_timeout": config.connect_timeout,
        "read_timeout": config.read_timeout,
        "header_timeout": config.header_timeout,
        "events": {name: _rule_to_json(cap) for name, cap in sorted(config.event_caps.items())},
        "max_units": config.max_units,
        "journal_bytes": config.journal_bytes,
        "shutdown_timeout": config.shutdown_timeout,
        "control_timeout": config.control_timeout,
        "cookie_max_age": config.cookie_max_age,
        "workers": config.workers,
    }


def config_from_json(data: Any, source: str) -> DealerConfig:
    """Parse and check a config; errors name the file and the field."""
    if not isinstance(data, dict):
        raise DealerError(f"{source}: expected a JSON object")
    try:
        raw_upstreams = data["upstreams"]
        if not isinstance(raw_upstreams, list):
            raise TypeError("upstreams must be a list of {name, url}")
        upstreams = check_upstreams({str(u["name"]): u["url"] for u in raw_upstreams})
        weights = normalise_weights(dict(data.get("weights", {})), tuple(upstreams))
        unit_raw = data.get("unit", {})
        kind = unit_raw.get("kind", "cookie")
        if kind not in ("cookie", "header"):
            raise ValueError(f"unit.kind must be cookie or header, got {kind!r}")
        defaults = DealerConfig(upstreams={}, weights={})
        config = DealerConfig(
            upstreams=upstreams,
            weights=weights,
            unit_kind=kind,
            unit_name=str(unit_raw.get("name", "squals_unit")),
            seed=str(data.get("seed", defaults.seed)),
            host=str(data.get("host", defaults.host)),
            port=int(data.get("port", 0)),
            admin_port=int(data.get("admin_port", 0)),
            token=str(data.get("token", "")),
            connect_timeout=float(data.get("connect_timeout", defaults.connect_timeout)),
            read_timeout=float(data.get("read_timeout", defaults.read_timeout)),
            header_timeout=float(data.get("header_timeout", defaults.header_timeout)),
            event_caps=event_caps(data.get("events", {})),
            max_units=int(data.get("max_units", defaults.max_units)),
            journal_bytes=int(data.get("journal_bytes", defaults.journal_bytes)),
            shutdown_timeout=float(data.get("shutdown_timeout", defaults.shutdown_timeout)),
            control_timeout=float(data.get("control_timeout", defaults.control_timeout)),
            cookie_max_age=int(data.get("cookie_max_age", defaults.cookie_max_age)),
            workers=int(data.get("workers", defaults.workers)),
        )
        if config.workers < 0:
            raise ValueError(f"workers must be 0 (not set) or more, got {config.workers}")
    except DealerError as exc:
        raise DealerError(f"{source}: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DealerError(f"{source}: bad Dealer config: {exc!r}") from exc
    if not config.token:
        raise DealerError(f"{source}: the admin token is empty")
    return config


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DealerError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise DealerError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc


def load_config(path: Path) -> DealerConfig:
    return config_from_json(read_json(path), str(path))


def write_config(path: Path, config: DealerConfig) -> None:
    atomic_write(path, json.dumps(config_to_json(config), indent=2) + "\n", mode=0o600)
