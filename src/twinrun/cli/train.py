"""`twinrun train`: one run of a built-in workload."""
