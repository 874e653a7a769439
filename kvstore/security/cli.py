"""``kvstore certs init | node | client | list``: the files an operator copies to hosts.

Rules: the folder is ``--certs-dir``, else the config's ``[tls] certs_dir``; nothing
existing is replaced without ``--overwrite``; every file made is printed with what to
do with it. Problems are ``ConfigError`` (one line, exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kvstore import config as config_mod
from kvstore.errors import ConfigError
from kvstore.security import certs


def register(sub: Any) -> None:
    parser = sub.add_parser("certs", help="make the CA, node and client certificates")
    actions = parser.add_subparsers(dest="certs_action", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--certs-dir", type=Path, help="default: the config's [tls] certs_dir")
        p.add_argument("--config", default="cluster.toml", help="cluster config file")
        p.add_argument("--overwrite", action="store_true", help="replace existing files")

    init = actions.add_parser("init", help="make the cluster's CA (ca.crt, ca.key)")
    common(init)
    init.add_argument("--days", type=int, default=certs.CA_DAYS)

    node = actions.add_parser("node", help="a node's certificate (node.ID.crt, node.ID.key)")
    node.add_argument("id")
    node.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="HOST",
        help="a host name or IP the node is reached at (repeatable; default: the config's)",
    )
    common(node)
    node.add_argument("--days", type=int, default=certs.LEAF_DAYS)

    client = actions.add_parser("client", help="a client's certificate with its role")
    client.add_argument("name")
    client.add_argument("--role", required=True, choices=certs.ROLES)
    common(client)
    client.add_argument("--days", type=int, default=certs.LEAF_DAYS)

    listing = actions.add_parser("list", help="the certificates in the folder, and whom they name")
    common(listing)
    parser.set_defaults(func=run)


def _folder(args: argparse.Namespace) -> tuple[Path, config_mod.ClusterConfig | None]:
    cfg = None
    if Path(args.config).exists():
        cfg = config_mod.load(args.config)
    if args.certs_dir is not None:
        return Path(args.certs_dir), cfg
    if cfg is None:
        raise ConfigError(f"{args.config}: no such config file (or give --certs-dir)")
    return cfg.tls_config.certs_dir, cfg


def run(args: argparse.Namespace) -> int:
    folder, cfg = _folder(args)
    days = getattr(args, "days", None)
    if days is not None and days < 1:
        raise ConfigError(f"--days {days} must be at least 1")
    if args.certs_action == "init":
        made = certs.init_ca(
            folder,
            cluster=cfg.name if cfg else "kvstore",
            days=args.days,
            overwrite=args.overwrite,
        )
        print(f"made {made.cert} (copy to every host) and {made.key} (keep it private)")
    elif args.certs_action == "node":
        hosts = list(args.address)
        if not hosts and cfg is not None:
            hosts = [cfg.node(args.id).host]
        if not hosts:
            raise ConfigError(f"give --address for node {args.id!r} (it is not in the config)")
        made = certs.issue_node(folder, args.id, hosts, days=args.days, overwrite=args.overwrite)
        print(f"made {made.cert} and {made.key} for {', '.join(hosts)}: copy both and ca.crt")
        print(f"to {args.id}'s host, into its [tls] certs_dir")
    elif args.certs_action == "client":
        made = certs.issue_client(
            folder, args.name, args.role, days=args.days, overwrite=args.overwrite
        )
        print(f"made {made.cert} and {made.key} (role {args.role}): give both and ca.crt")
        print(f"to the client (--ca/--cert/--key, or [tls] client = {args.name!r})")
    else:
        for line in certs.describe(folder):
            print(line)
    return 0
