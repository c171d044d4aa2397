"""`python -m services.registration`: serve registration on QTI_REGISTRATION_PORT."""

from services.registration.app import DEFINITION

DEFINITION.main()
