"""Prometheus metrics read from the node's plain counters at scrape time.

Why a custom collector: the hot path increments ints; prometheus-client's own counters take a
lock per increment, which at hundreds of thousands of deliveries per second is real CPU.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
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
        yield GaugeMetricFamily(
            _P + "admission_waiting",
            "Joins, creates and upgrades waiting for their turn (a join storm)",
            value=len(node.admission),
        )
        yield CounterMetricFamily(
            _P + "admitted", "Joins, creates and upgrades run by admission", value=node.admission.admitted
        )
        yield GaugeMetricFamily(
            _P + "fanout_seconds",
            "Time the last flush to many receivers spent writing",
            value=node.flush_took,
        )
        msgs = CounterMetricFamily(_P + "messages_in", "Valid client messages by type", labels=["type"])
        for kind, n in sorted(s.messages_in.items()):
            msgs.add_metric([kind], n)
        yield msgs
        errs = CounterMetricFamily(_P + "errors", "Errors sent to clients by code", labels=["code"])
        for code, n in sorted(s.errors.items()):
            errs.add_metric([code], n)
        yield errs
        if node.media is not None:
            yield from _sfu_metrics(node)


def _sfu_metrics(node: Node) -> Iterator[Metric]:
    from .sfu.hub import FORWARD_BUCKETS

    hub = node.media
    assert hub is not None
    st = hub.stats
    yield GaugeMetricFamily(_P + "sfu_peers", "WebRTC peer connections", value=hub._count)
    for name, doc, value in (
        ("sfu_packets_in", "RTP packets received from publishers", st.packets_in),
        ("sfu_packets_out", "RTP packets forwarded to subscribers", st.packets_out),
        ("sfu_bytes_out", "RTP bytes forwarded (before SRTP)", st.bytes_out),
        (
            "sfu_dropped_not_publisher",
            "RTP packets on a slot from someone not live on it",
            st.dropped_not_publisher,
        ),
        ("sfu_state_sent", "State messages sent over data channels", st.state_sent),
        (
            "sfu_state_skipped",
            "State messages left to the WebSocket (channel busy or closed)",
            st.state_skipped,
        ),
    ):
        yield CounterMetricFamily(_P + name, doc, value=value)
    buckets, acc = [], 0
    for bound, n in zip((*FORWARD_BUCKETS, float("inf")), st.forward_buckets, strict=True):
        acc += n
        buckets.append((str(bound) if bound != float("inf") else "+Inf", acc))
    yield HistogramMetricFamily(
        _P + "sfu_forward_seconds",
        "Receive of a publisher's packet to the send to its last subscriber",
        buckets=buckets,
        sum_value=st.forward_sum,
    )
    recent = sorted(st.recent)
    if recent:
        for q in (0.5, 0.99):
            yield GaugeMetricFamily(
                _P + f"sfu_forward_p{round(q * 100)}_seconds",
                f"Forwarding time, {q:.0%} quantile of the last {len(recent)} packets",
                value=recent[min(len(recent) - 1, int(q * len(recent)))],
            )


def make_registry(node: Node) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
