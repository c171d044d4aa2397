"""Reporting service: funder-ready figures without personal data, exports, dashboard, KPI events."""
