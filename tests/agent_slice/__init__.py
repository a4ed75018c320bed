"""A throwaway agent slice (agent, prompt, samples, job) that lives only here: the proof, run by test_agent_slice.py,
that a new agent adds files and edits no runtime module (docs/agents.md, "How to add an agent")."""
