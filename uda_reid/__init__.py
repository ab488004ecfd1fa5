"""uda-reid: domain-adaptive instance re-identification."""
__version__ = "0.1.0"
