"""Where runs are kept: one SQLite file (`runs.sqlite`) plus one artifact folder per run.

    from twinrun.store import Store
    store = Store()                      # ./twinrun-runs, or $TWINRUN_STORE
    run_id = store.start_run(workload="fashion-cnn", backend="jax", seed=0, config={}, seeds={},
                             determinism={}, environment={})
    store.record_epoch(run_id, 1, {"loss": 0.41})
    store.finish_run(run_id, fingerprint="9f2c...", metrics={"test_accuracy": 0.91},
                     epochs_trained=1, wall_time=12.5)
"""

from twinrun.store.location import DEFAULT_STORE_DIR, STORE_ENV_VAR, default_store_path
from twinrun.store.sqlite import Store, store_exists

__all__ = ["Store", "default_store_path", "store_exists", "DEFAULT_STORE_DIR", "STORE_ENV_VAR"]
