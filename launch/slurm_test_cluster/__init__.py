"""An emulated multi-node Slurm cluster on one machine, used by the launcher's tests
(``python -m launch.slurm_test_cluster start|status|stop``)."""
