"""`collective-sync` command line."""

from __future__ import annotations

import argparse
import logging

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
    serve.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
        )
        config.session.grace_period = args.grace
        run(config)


if __name__ == "__main__":
    main()
