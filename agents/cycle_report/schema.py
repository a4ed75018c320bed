"""What the model answers for a cycle report (the narrative only; the numbers are computed in code), and its checks."""

from __future__ import annotations

from pydantic import Field

from agents.answer_limits import text_problem
from core.vocabulary import StorableModel

TITLE_CHARS = 120
NARRATIVE_CHARS = 4000


class CycleReportOutput(StorableModel):
    title: str = Field(description="At most 10 words")
    narrative: str = Field(description="The report, addressed to the user")


def check_report(output: CycleReportOutput) -> list[str]:
    """Blank or overlong texts, worded for the repair request."""
    found = (
        text_problem("title", output.title, TITLE_CHARS, required=True),
        text_problem("narrative", output.narrative, NARRATIVE_CHARS, required=True),
    )
    return [problem for problem in found if problem]
