"""`collective-sync` command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

from .auth import AuthConfig
from .server.config import ServerConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="collective-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the embedded single-process server")
    d = ServerConfig()
    serve.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    serve.add_argument("--port", type=int, default=d.port, help="TCP port, 0 for any (default %(default)s)")
    serve.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes)
    serve.add_argument("--rate", type=float, default=d.rate_per_second, help="messages/s per connection")
    serve.add_argument("--burst", type=int, default=d.burst, help="token-bucket burst per connection")
    serve.add_argument(
        "--grace",
        type=float,
        default=d.session.grace_period,
        help="seconds a dropped participant may resume before leaving (leader failover)",
    )
    serve.add_argument(
        "--session-ttl", type=float, default=d.session_ttl, help="seconds an empty session lives on"
    )
    serve.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=d.max_connections_per_ip,
        help="open connections from one address (a venue's Wi-Fi, a load test) (default %(default)s)",
    )
    serve.add_argument(
        "--send-threads",
        type=int,
        default=d.send_threads,
        help="threads writing a large fan-out (1: the event loop alone) (default %(default)s)",
    )
    serve.add_argument(
        "--roster-limit",
        type=int,
        default=d.session.roster_limit,
        help="participants of a session announced one by one; the rest are counted (default %(default)s)",
    )
    store = serve.add_mutually_exclusive_group()
    store.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="directory of the durable store (SQLite); default $COLLECTIVE_SYNC_DATA_DIR, else "
        "$XDG_STATE_HOME/collective-sync (%(default)s)",
    )
    store.add_argument(
        "--memory", action="store_true", help="keep sessions in memory only: a restart loses them"
    )
    serve.add_argument(
        "--sync",
        choices=("full", "normal"),
        default=d.sync,
        help="full: fsync every commit (survives power loss); normal: survives a process crash only",
    )
    serve.add_argument(
        "--restart-grace",
        type=float,
        default=d.session.restart_grace,
        help="seconds participants connected at shutdown have to resume after a restart",
    )
    auth = serve.add_argument_group("identity (JWTs from the app's Supabase Auth)")
    auth.add_argument(
        "--auth-jwt-secret",
        default=os.environ.get("COLLECTIVE_SYNC_JWT_SECRET"),
        help="HS256 shared secret (Supabase's legacy JWT secret); better: $COLLECTIVE_SYNC_JWT_SECRET",
    )
    auth.add_argument(
        "--auth-jwks-url", help="JWKS URL of the signing keys (RS256/ES256), refreshed on unknown kid"
    )
    auth.add_argument("--auth-jwks-file", help="JWKS file of the signing keys")
    auth.add_argument("--auth-audience", help="required `aud` (Supabase: authenticated)")
    auth.add_argument(
        "--auth-issuer", help="required `iss` (Supabase: https://<project>.supabase.co/auth/v1)"
    )
    auth.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="accept anonymous users on a non-loopback --host (without it and without auth: refuse to start)",
    )
    serve.add_argument(
        "--allowed-origins",
        default="",
        help="comma-separated browser origins (besides its own) that may open a WebSocket; * for any",
    )
    serve.add_argument(
        "--metrics-token",
        default=os.environ.get("COLLECTIVE_SYNC_METRICS_TOKEN"),
        help="bearer token for /metrics (else open on loopback only); or $COLLECTIVE_SYNC_METRICS_TOKEN",
    )
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve wss:// and https:// directly")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    rtc = serve.add_argument_group("WebRTC (the SFU: streamed voice and engine audio, state channels)")
    rtc.add_argument("--no-rtc", action="store_true", help="no WebRTC: the WebSocket carries all")
    rtc.add_argument(
        "--rtc-host",
        action="append",
        help="address to offer ICE host candidates on (repeat; default: loopback when serving on "
        "loopback, else every interface)",
    )
    rtc.add_argument("--rtc-max-peers", type=int, default=d.rtc_max_peers, help="peer connections, in all")
    rtc.add_argument(
        "--rtc-state-channel-max",
        type=int,
        default=d.rtc_state_channel_max,
        help="peers in a session up to which state also goes over data channels",
    )
    serve.add_argument("--log-level", default="INFO")
    imp = sub.add_parser("impair", help="loopback proxy adding delay, jitter, loss, reordering")
    imp.add_argument("--target", required=True, help="HOST:PORT to forward to (loopback only)")
    imp.add_argument("--listen-port", type=int, default=0, help="0 picks a free port (printed)")
    imp.add_argument("--udp", action="store_true", help="forward UDP datagrams instead of TCP")
    for side in ("up", "down"):
        imp.add_argument(f"--delay-{side}", type=float, default=0.0, help=f"{side}link base delay (s)")
        imp.add_argument(f"--jitter-{side}", type=float, default=0.0, help=f"{side}link mean extra delay (s)")
        imp.add_argument(f"--loss-{side}", type=float, default=0.0, help=f"{side}link loss probability")
        imp.add_argument(f"--reorder-{side}", type=float, default=0.0, help=f"{side}link reorder share (UDP)")
    imp.add_argument("--seed", type=int, default=0)
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    clock = bench_sub.add_parser("clock", help="clock sync, PLL and playout in seeded network scenarios")
    clock.add_argument("--seed", type=int, default=1)
    clock.add_argument(
        "--ircam-dir",
        default="bench/ircam",
        help="where @ircam/sync is installed (npm ci there) for the side-by-side run",
    )
    clock.add_argument("--plots", help="directory for PNG plots of error over time")
    clock.add_argument("--json", help="also write the JSON report here")
    clock.add_argument("--only", help="run only the scenarios whose name contains this")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("picows").setLevel(logging.WARNING)  # it logs every connection at INFO
    if args.command == "serve":
        from .server.app import run

        config = ServerConfig(
            host=args.host,
            port=args.port,
            max_message_bytes=args.max_message_bytes,
            rate_per_second=args.rate,
            burst=args.burst,
            session_ttl=args.session_ttl,
            max_connections_per_ip=args.max_connections_per_ip,
            send_threads=args.send_threads,
            data_dir=None if args.memory else args.data_dir,
            sync=args.sync,
            auth=AuthConfig(
                secret=args.auth_jwt_secret or None,
                jwks_url=args.auth_jwks_url,
                jwks_file=args.auth_jwks_file,
                audience=args.auth_audience,
                issuer=args.auth_issuer,
            ),
            allow_anonymous=args.allow_anonymous,
            allowed_origins=tuple(o.strip() for o in args.allowed_origins.split(",") if o.strip()),
            metrics_token=args.metrics_token or None,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            rtc=not args.no_rtc,
            rtc_hosts=tuple(args.rtc_host) if args.rtc_host else None,
            rtc_max_peers=args.rtc_max_peers,
            rtc_state_channel_max=args.rtc_state_channel_max,
        )
        config.session.grace_period = args.grace
        config.session.restart_grace = args.restart_grace
        config.session.roster_limit = args.roster_limit
        run(config)
    elif args.command == "impair":
        _impair(args)
    elif args.command == "bench":
        _bench_clock(args)


def default_data_dir() -> Path:
    explicit = os.environ.get("COLLECTIVE_SYNC_DATA_DIR")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "collective-sync"


def _bench_clock(args: argparse.Namespace) -> None:
    import json
    import sys
    from pathlib import Path

    from .timing.bench import run, table

    report = run(args.seed, Path(args.ircam_dir), Path(args.plots) if args.plots else None, args.only)
    text = json.dumps(report, indent=2)
    print(text)
    print(table(report), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(text + "\n")


def _impair(args: argparse.Namespace) -> None:
    import asyncio

    from .netem import Impairment, ImpairProxy

    host, _, port = args.target.rpartition(":")
    sides = {
        side: Impairment(
            delay=getattr(args, f"delay_{side}"),
            jitter=getattr(args, f"jitter_{side}"),
            loss=getattr(args, f"loss_{side}"),
            reorder=getattr(args, f"reorder_{side}"),
        )
        for side in ("up", "down")
    }
    proxy = ImpairProxy(
        host or "127.0.0.1", int(port), sides["up"], sides["down"], args.seed, listen_port=args.listen_port
    )

    async def main() -> None:
        bound = await (proxy.start_udp() if args.udp else proxy.start_tcp())
        print(f"impairing {'udp' if args.udp else 'tcp'} 127.0.0.1:{bound} -> {args.target}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


if __name__ == "__main__":
    main()
