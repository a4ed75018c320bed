"""The engine that runs jobs: worker, claim, enqueue, registry, retry decision, cron, ledger glue, resources.

It knows no job by name. The jobs themselves sit one level up (jobs/*.py) and are listed in jobs/catalog.py; the
worker and the CLI are handed that list.
"""
