"""The rules `make bench`'s figures rest on: it prints figures, so nothing else would notice them broken."""

from __future__ import annotations

from urllib.parse import urlparse

import redis
from redis.cluster import RedisCluster

from bench.measure import persistence
from bench.measure.report import rounds_ratio


def test_a_cluster_run_counts_and_waits_out_the_forks_of_every_node(cluster_url: str) -> None:
    """A rewrite on a master other than the URL's shares the cores as much as one on the URL's."""
    assert len(set(persistence.nodes(cluster_url))) == 3
    with RedisCluster.from_url(cluster_url) as cluster:
        other = next(node for node in cluster.get_primaries() if node.port != urlparse(cluster_url).port)
    before = persistence.forks(cluster_url)
    with redis.Redis(host=other.host, port=other.port) as client:
        client.bgrewriteaof()
        persistence.wait_until_quiet(cluster_url)
        assert not client.info("persistence")["aof_rewrite_in_progress"]
    assert persistence.forks(cluster_url) == before + 1


def test_a_shape_is_set_beside_the_baseline_round_by_round() -> None:
    """Each run beside the baseline's run of its own round: round 2 ran on a box twice as fast for both."""
    baseline = [{"rps": 2000.0}, {"rps": 4000.0}, {"rps": 1000.0}]
    shape = [{"rps": 1000.0}, {"rps": 2000.0}, {"rps": 800.0}]
    assert rounds_ratio(shape, baseline) == "0.50 (0.50-0.80)"
