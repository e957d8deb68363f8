"""Launchers: torchrun on this machine (``launch.cli local``) and Slurm batch jobs with requeue on
preemption (``launch.cli slurm``). Whole sweeps are ``infinity-train sweep cluster=slurm``, which submits
each run through ``launch.cli slurm``."""
