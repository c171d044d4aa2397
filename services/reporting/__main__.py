"""`python -m services.reporting`: serve reporting on QTI_REPORTING_PORT."""

from services.reporting.app import DEFINITION

DEFINITION.main()
