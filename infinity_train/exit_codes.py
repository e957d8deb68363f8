"""Exit statuses of the training command, shared with the launchers."""

OK = 0
FAILURE = 1
CONFIG_ERROR = 2  # a bad key, option or value: fix the command line
NON_FINITE = 3  # too many non-finite steps in a row: the last good checkpoint is intact
REQUEUE = 75  # preempted (SIGUSR1 / SIGTERM): checkpointed, requeue me (EX_TEMPFAIL)
