"""The staff console under /verwaltung: sign-in, offerings, registrations, attendance, audit log."""
