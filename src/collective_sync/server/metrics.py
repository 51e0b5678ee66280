"""Prometheus metrics read from the node's plain counters at scrape time.

Why a custom collector: the hot path increments ints; prometheus-client's own counters take a
lock per increment, which at hundreds of thousands of deliveries per second is real CPU.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .node import Node

_P = "collective_sync_"


class NodeCollector(Collector):
    def __init__(self, node: Node):
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node, s = self.node, self.node.stats
        yield GaugeMetricFamily(_P + "connections", "Open client connections", value=len(node.conns))
        yield GaugeMetricFamily(_P + "sessions", "Live sessions", value=len(node.sessions))
        yield GaugeMetricFamily(
            _P + "participants",
            "Participants in all sessions (incl. in grace)",
            value=sum(len(x.participants) for x in node.sessions.values()),
        )
        for name, doc, value in (
            ("frames_in", "Client frames received", s.frames_in),
            ("frames_out", "Frames written to clients", s.frames_out),
            ("bytes_out", "Payload bytes written to clients", s.bytes_out),
            ("deliveries", "Messages delivered to receivers (a frame may carry several)", s.deliveries),
            ("coalesced_drops", "Superseded state values not sent to slow receivers", node.coalesced_drops()),
            ("slow_consumer_closes", "Connections closed for an over-long reliable backlog", s.slow_closes),
            ("store_commits", "Store transactions made durable (group commits)", node.store.commits),
            ("store_commit_seconds", "Time spent in durable store commits", node.store.commit_seconds),
        ):
            yield CounterMetricFamily(_P + name, doc, value=value)
        yield GaugeMetricFamily(
            _P + "held_for_disk",
            "Messages waiting for a control to be durable before they are sent",
            value=sum(len(q) for q in node._held.values()),
        )
        msgs = CounterMetricFamily(_P + "messages_in", "Valid client messages by type", labels=["type"])
        for kind, n in sorted(s.messages_in.items()):
            msgs.add_metric([kind], n)
        yield msgs
        errs = CounterMetricFamily(_P + "errors", "Errors sent to clients by code", labels=["code"])
        for code, n in sorted(s.errors.items()):
            errs.add_metric([code], n)
        yield errs


def make_registry(node: Node) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
