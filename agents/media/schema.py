"""What the vision model answers about an image, and the check pydantic cannot make (sizes, blankness)."""

from __future__ import annotations

from pydantic import Field

from agents.answer_limits import text_problem
from core.vocabulary import StorableModel


class ImageReading(StorableModel):
    """The model's whole answer for one image."""

    description: str = Field(description="What the image shows, for someone who cannot see it")
    visible_text: str | None = Field(description="Text written in the image, as written, or null")


def check_image_reading(output: ImageReading, max_chars: int) -> list[str]:
    """Problems worded for the repair request: a blank description, texts over the limit."""
    problems = [
        text_problem("description", output.description, max_chars, required=True),
        text_problem("visible_text", output.visible_text, max_chars),
    ]
    return [problem for problem in problems if problem]
