"""Launchers: torchrun on this machine (``launch.cli local``), Slurm batch jobs with requeue on
preemption (``launch.cli slurm``) and Hydra/submitit sweeps (``launch.cli sweep``)."""
