"""Reports: every analysis of a dataset with its figures, as one self-contained HTML file or
Markdown with PNGs beside it."""

from storelab.report.build import SECTION_TITLES, Section, build_report, report_sections

__all__ = ["SECTION_TITLES", "Section", "build_report", "report_sections"]
