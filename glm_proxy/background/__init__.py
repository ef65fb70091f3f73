"""Work beside the requests: conversation deletion, sweeps, recovery, shutdown, video jobs."""
