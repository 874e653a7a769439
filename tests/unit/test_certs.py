"""Certificates: what ``kvstore certs`` makes, whom it names, and the one-line reasons."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest

from kvstore.errors import ConfigError
from kvstore.security import certs
from kvstore.security.identity import ADMIN, PEER, READ, WRITE, Identity, parse_subject
from kvstore.security.tls import TLSFiles


def files(folder: Path, name: str, kind: str = "client") -> TLSFiles:
    paths = certs.client_paths(folder, name) if kind == "client" else certs.node_paths(folder, name)
    return TLSFiles(certs.ca_paths(folder).cert, paths.cert, paths.key)


def test_made_files_are_private_and_name_their_holder(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    certs.init_ca(folder, cluster="demo")
    certs.issue_node(folder, "n1", ["127.0.0.1", "db1.example"])
    certs.issue_client(folder, "alice", "read")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for key in folder.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert files(folder, "n1", "node").check() == Identity("n1", "node")
    assert files(folder, "alice").check() == Identity("alice", "read")
    listing = certs.describe(folder)
    assert any("node n1" in line for line in listing) and any(
        "read alice" in line for line in listing
    )


def test_nothing_is_replaced_without_overwrite(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    before = certs.ca_paths(tmp_path).key.read_bytes()
    with pytest.raises(ConfigError, match="exists already"):
        certs.init_ca(tmp_path)
    assert certs.ca_paths(tmp_path).key.read_bytes() == before
    certs.init_ca(tmp_path, overwrite=True)
    assert certs.ca_paths(tmp_path).key.read_bytes() != before


def test_ensure_local_makes_only_what_is_missing(tmp_path: Path) -> None:
    made = certs.ensure_local(tmp_path, "c", [("n1", "127.0.0.1"), ("n2", "127.0.0.1")])
    assert len(made) == 2 + 2 * 2 + 2  # CA, two nodes, the admin client
    assert certs.ensure_local(tmp_path, "c", [("n1", "127.0.0.1"), ("n2", "127.0.0.1")]) == []
    certs.node_paths(tmp_path, "n2").cert.unlink()
    again = certs.ensure_local(tmp_path, "c", [("n1", "127.0.0.1"), ("n2", "127.0.0.1")])
    assert again == [certs.node_paths(tmp_path, "n2").cert, certs.node_paths(tmp_path, "n2").key]


def test_bad_files_fail_with_one_line_naming_the_file(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    certs.init_ca(ours)
    certs.init_ca(theirs)
    certs.issue_client(ours, "ok", "admin")
    certs.issue_client(theirs, "stranger", "admin")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    certs.issue_client(ours, "old", "admin", days=1, not_before=past)
    cases = {
        "no such certificate": TLSFiles(certs.ca_paths(ours).cert, ours / "nope.crt", ours / "x"),
        "not issued by a valid CA": TLSFiles(
            certs.ca_paths(ours).cert,
            certs.client_paths(theirs, "stranger").cert,
            certs.client_paths(theirs, "stranger").key,
        ),
        "expired on": files(ours, "old"),
        "does not match": TLSFiles(
            certs.ca_paths(ours).cert,
            certs.client_paths(ours, "ok").cert,
            certs.client_paths(ours, "old").key,
        ),
    }
    for fragment, bad in cases.items():
        with pytest.raises(ConfigError, match=fragment) as info:
            bad.check()
        assert "\n" not in str(info.value)
    (ours / "garbage.crt").write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        TLSFiles(certs.ca_paths(ours).cert, ours / "garbage.crt", ours / "ca.key").check()


def test_names_and_roles_are_validated(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    with pytest.raises(ConfigError, match="role"):
        certs.issue_client(tmp_path, "bob", "root")
    with pytest.raises(ConfigError, match="client name"):
        certs.issue_client(tmp_path, "bob,OU=admin", "read")


@pytest.mark.parametrize(
    ("subject", "identity"),
    [
        (b"CN=n1,OU=node,O=kvstore", Identity("n1", "node")),
        (b"O=kvstore,OU=write,CN=app", Identity("app", "write")),
        (b"CN=n1,OU=node,O=other", None),
        (b"CN=n1,OU=root,O=kvstore", None),
        (b"CN=a\\,OU=admin,OU=read,O=kvstore", None),
        (b"CN=a+OU=admin,OU=read,O=kvstore", None),
        (b"CN=n1,OU=node,O=kvstore,CN=n2", None),
        (b"\xff", None),
    ],
)
def test_subjects_parse_strictly(subject: bytes, identity: Identity | None) -> None:
    assert parse_subject(subject) == identity


def test_the_role_ladder() -> None:
    reader, writer, admin, node = (Identity("x", k) for k in ("read", "write", "admin", "node"))
    assert [reader.may(n) for n in (READ, WRITE, ADMIN, PEER)] == [True, False, False, False]
    assert [writer.may(n) for n in (READ, WRITE, ADMIN, PEER)] == [True, True, False, False]
    assert [admin.may(n) for n in (READ, WRITE, ADMIN, PEER)] == [True, True, True, False]
    assert [node.may(n) for n in (READ, WRITE, ADMIN, PEER)] == [False, False, False, True]


def test_a_ca_bundle_accepts_certificates_of_either_ca_while_one_rotates(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    certs.init_ca(old)
    certs.init_ca(new)
    certs.issue_client(old, "app", "write")
    certs.issue_client(new, "app", "write")
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(
        certs.ca_paths(old).cert.read_bytes() + certs.ca_paths(new).cert.read_bytes()
    )
    for folder in (old, new):
        paths = certs.client_paths(folder, "app")
        assert TLSFiles(bundle, paths.cert, paths.key).check() == Identity("app", "write")
    paths = certs.client_paths(old, "app")
    with pytest.raises(ConfigError, match="not issued by a valid CA"):
        TLSFiles(certs.ca_paths(new).cert, paths.cert, paths.key).check()
