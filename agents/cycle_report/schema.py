"""What the model answers for a cycle report (the narrative only; the numbers are computed in code), and its checks."""

from __future__ import annotations

from pydantic import Field

from core.vocabulary import StorableModel

TITLE_CHARS = 120
NARRATIVE_CHARS = 4000


class CycleReportOutput(StorableModel):
    title: str = Field(description="At most 10 words")
    narrative: str = Field(description="The report, addressed to the user")


def check_report(output: CycleReportOutput) -> list[str]:
    """Blank or overlong texts, worded for the repair request."""
    problems = []
    for where, value, most in (("title", output.title, TITLE_CHARS), ("narrative", output.narrative, NARRATIVE_CHARS)):
        if not value.strip():
            problems.append(f"{where}: must not be blank")
        elif len(value) > most:
            problems.append(f"{where}: {len(value)} characters; write at most {most}")
    return problems
