"""The cycle report agent: a growth cycle's numbers in, a report out. Pure: no SQL, no queue.

Its modules: `inputs` (what it reads), `report` (the numbers, computed in code: growth per dimension this cycle vs
the previous one, top concepts, highlights, counts), `schema` (the model's answer: title and narrative) and `agent`
(CycleReportAgent; no call for an empty cycle). Its prompt is prompts/cycle_report.j2, its scripted answers
agents/samples/cycle_report.json, its transaction store/cycle_report_writes.py (the report, its card and the cycle
reset, once), its job jobs/cycle_report.py.
"""

from agents.cycle_report.agent import AGENT_NAME, EMPTY_TITLE, PROMPT_NAME, CycleReport, CycleReportAgent
from agents.cycle_report.inputs import COUNTED, CycleInsight, CycleMaterial, GrowthSums, Highlight, TopConcept
from agents.cycle_report.report import content_data, growth_table
from agents.cycle_report.schema import CycleReportOutput, check_report

__all__ = [
    "AGENT_NAME",
    "COUNTED",
    "EMPTY_TITLE",
    "PROMPT_NAME",
    "CycleInsight",
    "CycleMaterial",
    "CycleReport",
    "CycleReportAgent",
    "CycleReportOutput",
    "GrowthSums",
    "Highlight",
    "TopConcept",
    "check_report",
    "content_data",
    "growth_table",
]
