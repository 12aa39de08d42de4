"""A store is plain hive-partitioned Parquet: Spark reads it as is.

Optional (``pytest -m spark``; deselected by default as it starts a JVM):
pyspark in local mode reads ``events/`` with no hptrack code and must count the
same trials per search and state as hptrack's DuckDB views. Skipped when
pyspark (``pip install hptrack[spark]``) or Java is missing.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import hptrack

pytestmark = pytest.mark.spark

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install pyspark "
                              "or hptrack[spark])")


def _java():
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


if _java() is None:
    pytest.skip("Java is not installed (pyspark needs a JVM: set JAVA_HOME or put java on PATH)",
                allow_module_level=True)

# Several searches with every end state, written by two processes (so by several
# writers) that exit normally: their logs are sealed into events/ segments.
WRITE = textwrap.dedent("""
    import sys, hptrack
    store, part = sys.argv[1], int(sys.argv[2])
    for k in range(3):
        s = hptrack.search(f"search-{k}", strategy="random", store=store)
        for i in range(5 + 3 * k + part):
            t = s.trial({"lr": 0.1 * (i + 1), "depth": i % 4, "kind": "abc"[i % 3]})
            t.report(0, float(i))
            if i % 5 == 3:
                t.prune(0)
            elif i % 5 == 4:
                t.fail(ValueError("diverged"))
            elif i % 7 == 6:
                pass                            # left running
            else:
                t.score(0.5, split="fold", fold=0)
                t.complete(i / 10)
        s.finish()
""")

# The same rules as hptrack's views: an event counted once (a segment may repeat
# events of a log sealed during a crash), a trial's first terminal event wins.
SPARK_COUNTS = """
WITH ev AS (
    SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY seq) AS k
                   FROM events) WHERE k = 1
), started AS (
    SELECT DISTINCT search_id, trial_id FROM ev WHERE type = 'trial_started'
), ended AS (
    SELECT * FROM (
        SELECT search_id, trial_id, type,
               row_number() OVER (PARTITION BY search_id, trial_id ORDER BY event_id) AS k
        FROM ev WHERE type IN ('trial_completed', 'trial_failed', 'trial_pruned')) WHERE k = 1
)
SELECT s.search_id,
       CASE e.type WHEN 'trial_completed' THEN 'complete' WHEN 'trial_failed' THEN 'failed'
                   WHEN 'trial_pruned' THEN 'pruned' ELSE 'running' END AS state,
       count(*) AS n
FROM started s LEFT JOIN ended e ON s.search_id = e.search_id AND s.trial_id = e.trial_id
GROUP BY 1, 2
"""


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("hptrack-test")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.session.timeZone", "UTC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


def test_spark_counts_trials_like_duckdb(tmp_path, spark):
    store = str(tmp_path / "store")
    for part in (0, 1):
        subprocess.run([sys.executable, "-c", WRITE, store, str(part)], check=True, timeout=60)
    wal = os.path.join(store, "wal")
    assert not (os.path.isdir(wal) and os.listdir(wal)), "the writers did not seal their logs"

    duck = {(sid, state): n for sid, state, n in hptrack.connect(store).sql(
        "SELECT search_id, state, count(*) FROM trials GROUP BY ALL").fetchall()}
    assert {state for _, state in duck} == {"complete", "pruned", "failed", "running"}
    assert len({sid for sid, _ in duck}) == 3

    df = spark.read.option("basePath", os.path.join(store, "events")).parquet(
        os.path.join(store, "events"))
    # the folder name is the partition column; it must agree with the column inside
    assert "search" in df.columns
    assert df.where("search <> search_id").count() == 0
    df.createOrReplaceTempView("events")
    got = {(r.search_id, r.state): r.n for r in spark.sql(SPARK_COUNTS).collect()}
    assert got == duck

    # what Spark sees is the whole store: every event, with the params struct intact
    (n_events,), = hptrack.connect(store).sql("SELECT count(*) FROM events").fetchall()
    assert df.count() == n_events
    lr = {(r.trial_id, r.num) for r in spark.sql(
        "SELECT trial_id, p.num FROM events LATERAL VIEW explode(params) x AS p "
        "WHERE type = 'trial_started' AND p.name = 'lr'").collect()}
    assert lr == set(hptrack.connect(store).sql(
        "SELECT trial_id, value_num FROM params WHERE name = 'lr'").fetchall())

    # and a search's partition alone, as Athena/Trino would prune it
    one = next(iter(sorted({sid for sid, _ in duck})))
    part = spark.read.parquet(os.path.join(store, "events", f"search={one}"))
    (n_one,), = hptrack.connect(store).sql(
        "SELECT count(*) FROM events WHERE search_id = ?", params=[one]).fetchall()
    assert part.count() == n_one
