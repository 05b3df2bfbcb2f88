"""The report's words and pages: sentences, formats, sections, figures, and the files
(report.md, report.html, CSVs, PNGs); also the sweep's closing terminal table."""
