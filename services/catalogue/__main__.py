"""`python -m services.catalogue`: serve the catalogue on QTI_CATALOGUE_PORT."""

from services.catalogue.app import DEFINITION

DEFINITION.main()
