"""SLURM: cluster profiles (profile.py), the job a trial runs in and its signal handling (job.py),
submitting jobs and job arrays (submit.py), the record of submitted jobs (jobs.py), and the job's
entry point (entry.py, run as `python -m algobench.slurm.entry`)."""
