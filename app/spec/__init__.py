"""The languages users write, parsed and checked; pure (no I/O): workflow specs
(`workflow`) and the same written in Python (`builder`, `dagq.Workflow`), which nodes a
rerun runs again (`rerun_plan`), the stored form of a spec (`stored`) and cron schedules
(`cron`)."""
