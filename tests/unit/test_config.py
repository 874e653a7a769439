"""cluster.toml validation: every bad field is named, with the problem."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from kvstore import config
from kvstore.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
[cluster]
name = "t"
n = 3
r = "quorum"
w = 2
[[nodes]]
id = "a"
address = "127.0.0.1:9001"
data_dir = "d/a"
[[nodes]]
id = "b"
address = "127.0.0.1:9002"
data_dir = "d/b"
[[nodes]]
id = "c"
address = "127.0.0.1:9003"
data_dir = "/abs/c"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def test_shipped_cluster_toml_is_valid() -> None:
    cfg = config.load(ROOT / "cluster.toml")
    assert len(cfg.nodes) == 5 and cfg.n == 3 and cfg.r == 2 and cfg.w == 2
    assert cfg.read_cache_mb == 16
    assert all(n.host == "127.0.0.1" for n in cfg.nodes)


def test_good_config_resolves_paths_and_levels(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD))
    assert (cfg.r, cfg.w) == (2, 2)
    assert cfg.node("a").data_dir == tmp_path / "d/a"
    assert cfg.node("c").data_dir == Path("/abs/c")
    assert (
        config.parse(__import__("tomllib").loads(config.render(cfg)), base=tmp_path).nodes
        == cfg.nodes
    )
    sized = config.load(
        write(tmp_path, GOOD.replace('name = "t"', 'name = "t"\nread_cache_mb = 0'))
    )
    assert sized.read_cache_mb == 0
    assert config.parse(tomllib.loads(config.render(sized)), base=tmp_path).read_cache_mb == 0


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("n = 3", "n = 4", "cluster.n: 4 must be between 1 and the number of nodes (3)"),
        ('r = "quorum"', 'r = "most"', "cluster.r: r='most' is not a level"),
        ("w = 2", "w = 5", "cluster.w: w=5 needs 5 replicas but N=3"),
        ("n = 3", 'n = "3"', "cluster.n: expected an integer, got str"),
        ('name = "t"', 'name = "t"\nflavour = 1', "cluster.flavour: unknown field"),
        ('address = "127.0.0.1:9002"', 'address = "127.0.0.1"', "nodes[1].address"),
        ('address = "127.0.0.1:9002"', 'address = "127.0.0.1:99999"', "from 1 to 65535"),
        ('address = "127.0.0.1:9002"', 'address = "127.0.0.1:9001"', "duplicate address"),
        ('id = "b"', 'id = "a"', "nodes[1].id: duplicate node id 'a'"),
        ('data_dir = "d/b"', "", "nodes[1].data_dir: missing"),
        ('name = "t"', 'name = "t"\nengine = "rocks"', "cluster.engine"),
        ('name = "t"', 'name = "t"\nvnodes = 0', "cluster.vnodes"),
        ('name = "t"', 'name = "t"\nsloppy = 1', "cluster.sloppy: expected a boolean"),
        ('name = "t"', 'name = "t"\nread_cache_mb = -1', "cluster.read_cache_mb: -1 must be"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, old: str, new: str, fragment: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, GOOD.replace(old, new, 1)))
    assert fragment in str(info.value)
    assert str(tmp_path / "cluster.toml") in str(info.value)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[cluster\n"))
    with pytest.raises(ConfigError, match="missing \\[cluster\\]"):
        config.load(write(tmp_path, "[[nodes]]\nid='a'\n"))
    with pytest.raises(ConfigError, match="nodes: missing"):
        config.load(write(tmp_path, "[cluster]\nn=1\n"))


def test_anti_entropy_and_tombstone_grace(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD))
    assert cfg.anti_entropy_interval_s == 0.0  # on demand only, by default
    assert cfg.tombstone_grace_s == math.inf  # and so, by default, never purge
    scheduled = config.load(with_cluster(tmp_path, "anti_entropy_interval_s = 30"))
    assert scheduled.tombstone_grace_s == 10 * 86400.0  # with scheduled repair: 10 days
    text = GOOD.replace(
        'name = "t"',
        'name = "t"\nanti_entropy_interval_s = 30\ntombstone_grace_s = 3600.5\nhint_window_s = 600',
    )
    cfg = config.load(write(tmp_path, text))
    assert (cfg.anti_entropy_interval_s, cfg.tombstone_grace_s) == (30.0, 3600.5)
    again = config.parse(__import__("tomllib").loads(config.render(cfg)), base=tmp_path)
    assert (again.anti_entropy_interval_s, again.tombstone_grace_s) == (30.0, 3600.5)
    for extra, fragment in [
        ("anti_entropy_interval_s = -1", "cluster.anti_entropy_interval_s: -1.0 must be 0"),
        ("tombstone_grace_s = 0", "cluster.tombstone_grace_s: 0.0 must be positive"),
        ('tombstone_grace_s = "1d"', "cluster.tombstone_grace_s: expected an integer or a number"),
        (
            "anti_entropy_interval_s = 60\ntombstone_grace_s = 60",
            "repair must run within the grace period",
        ),
    ]:
        with pytest.raises(ConfigError) as info:
            config.load(write(tmp_path, GOOD.replace('name = "t"', f'name = "t"\n{extra}')))
        assert fragment in str(info.value)


def with_cluster(tmp_path: Path, extra: str) -> Path:
    return write(tmp_path, GOOD.replace('name = "t"', f'name = "t"\n{extra}', 1))


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(path) in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("hint_window_s = inf", "cluster.hint_window_s: inf"),
        ("hint_window_s = +inf", "cluster.hint_window_s: inf"),
        ("tombstone_grace_s = nan", "cluster.tombstone_grace_s: nan"),
        (
            "anti_entropy_interval_s = 30\ntombstone_grace_s = -nan",
            "cluster.tombstone_grace_s: nan",
        ),
        ("anti_entropy_interval_s = -inf", "cluster.anti_entropy_interval_s: -inf"),
        ("anti_entropy_interval_s = nan", "cluster.anti_entropy_interval_s: nan"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path: Path, extra: str, field: str) -> None:
    # TOML has inf and nan; nan passes every range check, inf makes a window endless.
    message = refused(with_cluster(tmp_path, extra))
    assert f"{field} is not a finite number (inf and nan are refused)" in message


def test_hint_window_must_be_shorter_than_tombstone_grace(tmp_path: Path) -> None:
    ae = "anti_entropy_interval_s = 60\ntombstone_grace_s = 3600"
    cfg = config.load(with_cluster(tmp_path, f"{ae}\nhint_window_s = 3599.5"))
    assert (cfg.hint_window_s, cfg.tombstone_grace_s) == (3599.5, 3600.0)
    for hint in ("3600", "7200"):
        message = refused(with_cluster(tmp_path, f"{ae}\nhint_window_s = {hint}"))
        assert (
            f"cluster.hint_window_s: hint_window_s ({float(hint)}) must be shorter than" in message
        )
        assert "tombstone_grace_s (3600.0)" in message
        assert "resurrect data whose tombstone was already purged" in message
    # only the grace period given, below the default window (3 h): that is the field named
    message = refused(with_cluster(tmp_path, ae))
    assert "cluster.tombstone_grace_s: hint_window_s (10800.0) must be shorter than" in message
    # with anti-entropy off tombstones are never purged, so any finite window is fine
    assert config.load(with_cluster(tmp_path, "hint_window_s = 1e9")).hint_window_s == 1e9


@pytest.mark.parametrize(
    ("data_dir", "fragment"),
    [
        ("d/a", "nodes[1].data_dir: {tmp}/d/a is also nodes[0].data_dir"),
        ("d/./x/../a", "nodes[1].data_dir: {tmp}/d/a is also nodes[0].data_dir"),
        ("{tmp}/d/a/", "nodes[1].data_dir: {tmp}/d/a is also nodes[0].data_dir"),
        ("link-to-a", "nodes[1].data_dir: {tmp}/d/a is also nodes[0].data_dir"),  # a symlink
        ("d/a/inner", "nodes[1].data_dir: {tmp}/d/a/inner is inside nodes[0].data_dir"),
        ("d", "nodes[1].data_dir: {tmp}/d contains nodes[0].data_dir ({tmp}/d/a)"),
        ("/abs/c/b", "nodes[2].data_dir: /abs/c contains nodes[1].data_dir (/abs/c/b)"),
    ],
)
def test_nodes_sharing_a_data_dir_are_refused(tmp_path: Path, data_dir: str, fragment: str) -> None:
    tmp = tmp_path.resolve()
    (tmp / "d" / "a").mkdir(parents=True)
    (tmp / "link-to-a").symlink_to(tmp / "d" / "a")
    text = GOOD.replace('data_dir = "d/b"', f'data_dir = "{data_dir.format(tmp=tmp)}"')
    message = refused(write(tmp_path, text))
    assert fragment.format(tmp=tmp) in message
    assert "every node needs its own" in message
    # siblings with a common prefix are not nested
    config.load(write(tmp_path, GOOD.replace('data_dir = "d/b"', 'data_dir = "d/ab"')))


def test_tombstone_purging_needs_scheduled_anti_entropy(tmp_path: Path) -> None:
    expected = (
        "cluster.tombstone_grace_s: tombstone purging needs scheduled anti-entropy: set "
        "anti_entropy_interval_s > 0 or leave tombstone_grace_s out"
    )
    for extra in (
        "tombstone_grace_s = 864000",
        "anti_entropy_interval_s = 0\ntombstone_grace_s = 5",
    ):
        assert expected in refused(with_cluster(tmp_path, extra))
    # left out with anti-entropy off: never purge, and render -> parse keeps it that way
    cfg = config.load(with_cluster(tmp_path, "anti_entropy_interval_s = 0"))
    assert cfg.tombstone_grace_s == math.inf
    again = config.parse(tomllib.loads(config.render(cfg)), base=tmp_path)
    assert (again.anti_entropy_interval_s, again.tombstone_grace_s) == (0.0, math.inf)
    # scheduled anti-entropy: the grace period may be given, or defaults to 10 days
    cfg = config.load(
        with_cluster(tmp_path, "anti_entropy_interval_s = 60\ntombstone_grace_s = 1e5")
    )
    assert (cfg.anti_entropy_interval_s, cfg.tombstone_grace_s) == (60.0, 1e5)


def test_a_metrics_address_is_validated_and_round_trips(tmp_path: Path) -> None:
    text = GOOD.replace('data_dir = "d/a"', 'data_dir = "d/a"\nmetrics = "127.0.0.1:9101"')
    cfg = config.load(write(tmp_path, text))
    assert [n.metrics for n in cfg.nodes] == ["127.0.0.1:9101", None, None]
    again = config.parse(tomllib.loads(config.render(cfg)), base=tmp_path)
    assert again.nodes[0].metrics == "127.0.0.1:9101"
    for bad, fragment in (("9101", "HOST:PORT"), ("127.0.0.1:9001", "already used")):
        broken = GOOD.replace('data_dir = "d/a"', f'data_dir = "d/a"\nmetrics = "{bad}"')
        with pytest.raises(ConfigError, match=rf"nodes\[0\]\.metrics: .*{fragment}"):
            config.load(write(tmp_path, broken))
