"""An integration used without its library says which extra to install; what needs no
library keeps working. Each check runs in a fresh interpreter where the library cannot be
imported (``sys.modules[name] = None``, as if it were not installed), so the tests say the same
on a core-only venv and on the full one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_without(libraries: list[str], code: str, tmp_path) -> subprocess.CompletedProcess:
    block = "".join(f"sys.modules[{name!r}] = None\n" for name in libraries)
    script = "import sys\n" + block + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "HPTRACK_STORE": str(tmp_path / "store")})


def test_optuna_integration_names_its_extra(tmp_path):
    out = run_without(["optuna"], """
        try:
            import hptrack.optuna
        except ImportError as e:
            print("ImportError:", e)
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "hptrack.optuna needs the 'optuna' extra" in out.stdout
    assert "pip install 'hptrack[optuna]'" in out.stdout


def test_ray_import_results_needs_no_ray_and_the_callback_names_its_extra(tmp_path):
    out = run_without(["ray"], """
        import hptrack, hptrack.ray
        assert callable(hptrack.ray.import_results)
        try:
            hptrack.ray.Callback("x", metric="acc", mode="max")
        except ImportError as e:
            print("ImportError:", e)
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "hptrack.ray.Callback needs the 'ray' extra" in out.stdout
    assert "pip install 'hptrack[ray]'" in out.stdout


def test_demo_names_its_extra_before_running_anything(tmp_path):
    out = run_without(["optuna"], """
        from hptrack.cli.main import main
        main(["demo", "--quick", "--store", "demo-store"])
    """, tmp_path)
    assert out.returncode == 1
    assert "pip install 'hptrack[demo]'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "demo-store").exists()


def test_core_and_core_integrations_import_without_any_extra(tmp_path):
    # scikit-learn is a core dependency: hptrack.sklearn, hptrack.pbt and the loops need no extra
    out = run_without(["optuna", "ray", "dask", "distributed", "s3fs", "gcsfs", "skopt", "pyspark", "moto"], """
        import hptrack, hptrack.sklearn, hptrack.pbt, hptrack.loops, hptrack.analysis, hptrack.cli.main
        import hptrack.training
        with hptrack.search("s") as s:
            with s.trial({"a": 1}) as t:
                t.complete(1.0)
        print(hptrack.trials("s").height)
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1"
