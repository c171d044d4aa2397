from registration_kit import harness

__all__ = ["harness"]
