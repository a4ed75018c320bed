"""The media agent: an attachment (image, audio, document) in, its text out. Pure but for its model ports.

Its modules: `types` (what a file is, from its bytes), `documents` (PDF and text extraction), `schema` (what the
vision model answers) and `agent` (MediaAgent). Its prompts are prompts/media_image.j2 (the vision request) and
prompts/media_transcription.j2 (the transcription's guiding prompt), its scripted answers
agents/samples/media_image.json and agents/samples/media_transcription.json, the fetching of the file
store/media_files.py, its writes store/repos/media_items.py, its job jobs/media.py.
"""

from agents.media.agent import AGENT_NAME, IMAGE_PROMPT, TRANSCRIPTION_PROMPT, MediaAgent, MediaInput, MediaLLM
from agents.media.documents import document_text
from agents.media.schema import ImageReading, check_image_reading
from agents.media.types import FORMATS, detect_type

__all__ = [
    "AGENT_NAME",
    "FORMATS",
    "IMAGE_PROMPT",
    "TRANSCRIPTION_PROMPT",
    "ImageReading",
    "MediaAgent",
    "MediaInput",
    "MediaLLM",
    "check_image_reading",
    "detect_type",
    "document_text",
]
