"""Demand from Prometheus, through prometheus-api-client: one query, every tier, with sample times.

The demand query (by default the recording rule `tier:swell_offered_demand:current` from
dashboards/) must return one series per tier, labelled `tier`. It is sent once per pass as

    (Q) or label_replace(timestamp(Q), "swell_field", "timestamp", "", "")

so that a single round trip brings each tier's value and the time its sample was taken: the
loop needs both to refuse stale data. A value of NaN or +-Inf becomes a missing sample.

With `demand_targets` configured, the same round trip also brings, per tier, how many scrape
targets fed the sum and how many should have (two more `or label_replace(...)` terms, fields
`targets_up` and `targets_expected`): a sum over bridges drops when some exporters time out while
its timestamp stays fresh, and only the counts tell that apart from a fall in demand. Target series
without a `tier` label are ignored (that tier then has no count, and the loop holds it).

Any reply that is not a vector of samples (a 200 without `data`, a `result` that is not a list, a
sample without a value) is a `MetricsSourceError`, never an exception out of the loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from autoscaler.ports import MetricsSourceError, Sample

_FIELD = "swell_field"


@dataclass(frozen=True)
class PrometheusSettings:
    url: str
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    ca_file: Path | None = None
    timeout_s: float = 5.0

    def __repr__(self) -> str:  # never show credentials, even in a traceback
        return f"PrometheusSettings(url={safe_url(self.url)!r}, timeout_s={self.timeout_s})"


def safe_url(url: str) -> str:
    """The URL without any user:password part, fit for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class TargetQueries:
    """Per tier: targets that fed the demand sum (`up`), and targets that should have (`expected`)."""

    up: str
    expected: str


_TARGET_FIELDS = ("targets_up", "targets_expected")


def paired_query(query: str, targets: TargetQueries | None = None) -> str:
    paired = f'({query}) or label_replace(timestamp({query}), "{_FIELD}", "timestamp", "", "")'
    if targets is not None:
        for field, q in zip(_TARGET_FIELDS, (targets.up, targets.expected), strict=True):
            paired += f' or label_replace({q}, "{_FIELD}", "{field}", "", "")'
    return paired


def parse_paired_result(result: Any, query: str) -> dict[str, Sample]:
    """Turn the paired query's vector into one Sample per tier. Raises MetricsSourceError."""
    if not isinstance(result, list) or not all(isinstance(s, dict) for s in result):
        raise MetricsSourceError(f"demand query {query!r}: the reply is not a vector of samples")
    fields: dict[str, dict[str, float]] = {"value": {}, "timestamp": {}, **{f: {} for f in _TARGET_FIELDS}}
    for series in result:
        labels = series.get("metric")
        if not isinstance(labels, dict):
            raise MetricsSourceError(f"demand query {query!r}: a sample without labels")
        field = labels.get(_FIELD, "value")
        tier = labels.get("tier")
        if field not in fields:
            raise MetricsSourceError(f"demand query {query!r}: unknown {_FIELD} {field!r}")
        if tier is None:
            if field in _TARGET_FIELDS:
                continue  # cannot be attributed: that tier has no count, and holds
            raise MetricsSourceError(
                f"demand query {query!r} returned a series without a `tier` label: {labels}"
            )
        target = fields[field]
        if tier in target:
            what = "series" if field == "value" else f"{field} series"
            raise MetricsSourceError(
                f"demand query {query!r} returned several {what} for tier {tier!r}: use `sum by (tier)`"
            )
        try:
            target[tier] = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsSourceError(f"demand query {query!r}: malformed sample for tier {tier!r}") from exc
    up, expected = fields["targets_up"], fields["targets_expected"]
    samples: dict[str, Sample] = {}
    for tier, value in fields["value"].items():
        # Without its own timestamp series (NaN values drop out of timestamp()), the sample's age is
        # unknown: count it as infinitely old, which the loop treats as stale.
        samples[tier] = Sample.of(
            value,
            fields["timestamp"].get(tier, float("-inf")),
            _count(up.get(tier)),
            _count(expected.get(tier)),
        )
    return samples


def _count(value: float | None) -> int | None:
    return round(value) if value is not None and math.isfinite(value) else None


class PrometheusDemand:
    """`MetricsSource` over Prometheus's HTTP API."""

    def __init__(
        self, settings: PrometheusSettings, query: str, targets: TargetQueries | None = None
    ) -> None:
        self.settings = settings
        self.query = query
        self.targets = targets
        session = requests.Session()
        session.verify = str(settings.ca_file) if settings.ca_file else True
        headers = {"Authorization": f"Bearer {settings.bearer_token}"} if settings.bearer_token else None
        self._client = PrometheusConnect(
            url=settings.url.rstrip("/"),
            headers=headers,
            auth=settings.basic_auth,
            session=session,
            # One quick retry on a refused connection or a 502/503/504, then fail: a pass must not
            # hang while the loop should be holding.
            retry=Retry(total=1, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
            timeout=settings.timeout_s,
        )

    def demand(self) -> Mapping[str, Sample]:
        where = safe_url(self.settings.url)
        try:
            result = self._client.custom_query(paired_query(self.query, self.targets))
        except PrometheusApiClientException as exc:
            raise MetricsSourceError(
                f"Prometheus at {where} refused the demand query: {str(exc)[:300]}"
            ) from None
        except requests.exceptions.JSONDecodeError as exc:  # a RequestException too: test it first
            raise MetricsSourceError(f"Prometheus at {where} sent a malformed reply: {exc}") from None
        except requests.RequestException as exc:
            raise MetricsSourceError(f"Prometheus at {where} is unreachable ({type(exc).__name__})") from None
        except ValueError as exc:
            raise MetricsSourceError(f"Prometheus at {where} sent a malformed reply: {exc}") from None
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            # A 200 whose body lacks `data` or `result` (a proxy's page, a broken server).
            raise MetricsSourceError(
                f"Prometheus at {where} sent a reply without data.result ({type(exc).__name__}: {exc})"
            ) from None
        return parse_paired_result(result, self.query)

    def per_instance(self, query: str) -> dict[str, float]:
        """One instant query, its values keyed by the `instance` label (drains read sessions per
        instance this way). Raises MetricsSourceError."""
        where = safe_url(self.settings.url)
        try:
            result = self._client.custom_query(query)
            return {
                str(item["metric"]["instance"]): float(item["value"][1])
                for item in result
                if "instance" in item.get("metric", {})
            }
        except (
            PrometheusApiClientException,
            requests.RequestException,
            ValueError,
            KeyError,
            TypeError,
        ) as exc:
            raise MetricsSourceError(
                f"Prometheus at {where}: the sessions query failed ({type(exc).__name__})"
            ) from None
