"""The lowest floor: what agents, stores, jobs and the CLI all share (errors, vocabulary, record types, cron).

Nothing here imports anything of Orrery's but `settings`, so every other package may import it.
"""
