"""`python -m services.notification`: serve notification on QTI_NOTIFICATION_PORT."""

from services.notification.app import DEFINITION

DEFINITION.main()
