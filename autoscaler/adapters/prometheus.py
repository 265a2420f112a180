"""Demand from Prometheus, through prometheus-api-client: one query, every tier, with sample times.

The demand query (by default the recording rule `tier:swell_offered_demand:current` from
dashboards/) must return one series per tier, labelled `tier`. It is sent once per pass as

    (Q) or label_replace(timestamp(Q), "swell_field", "timestamp", "", "")

so that a single round trip brings each tier's value and the time its sample was taken: the
loop needs both to refuse stale data. A value of NaN or +-Inf becomes a missing sample.
"""

from __future__ import annotations

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


def paired_query(query: str) -> str:
    return f'({query}) or label_replace(timestamp({query}), "{_FIELD}", "timestamp", "", "")'


def parse_paired_result(result: list[dict[str, Any]], query: str) -> dict[str, Sample]:
    """Turn the paired query's vector into one Sample per tier. Raises MetricsSourceError."""
    values: dict[str, float] = {}
    stamps: dict[str, float] = {}
    for series in result:
        labels = series.get("metric", {})
        tier = labels.get("tier")
        if tier is None:
            raise MetricsSourceError(
                f"demand query {query!r} returned a series without a `tier` label: {labels}"
            )
        target = stamps if labels.get(_FIELD) == "timestamp" else values
        if tier in target:
            raise MetricsSourceError(
                f"demand query {query!r} returned several series for tier {tier!r}: use `sum by (tier)`"
            )
        try:
            target[tier] = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsSourceError(f"demand query {query!r}: malformed sample for tier {tier!r}") from exc
    samples: dict[str, Sample] = {}
    for tier, value in values.items():
        # Without its own timestamp series (NaN values drop out of timestamp()), the sample's age is
        # unknown: count it as infinitely old, which the loop treats as stale.
        samples[tier] = Sample.of(value, stamps.get(tier, float("-inf")))
    return samples


class PrometheusDemand:
    """`MetricsSource` over Prometheus's HTTP API."""

    def __init__(self, settings: PrometheusSettings, query: str) -> None:
        self.settings = settings
        self.query = query
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
            result = self._client.custom_query(paired_query(self.query))
        except PrometheusApiClientException as exc:
            raise MetricsSourceError(
                f"Prometheus at {where} refused the demand query: {str(exc)[:300]}"
            ) from None
        except requests.RequestException as exc:
            raise MetricsSourceError(f"Prometheus at {where} is unreachable ({type(exc).__name__})") from None
        except ValueError as exc:
            raise MetricsSourceError(f"Prometheus at {where} sent a malformed reply: {exc}") from None
        return parse_paired_result(result, self.query)
