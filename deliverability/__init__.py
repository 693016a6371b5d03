"""DMARC aggregate/failure reports, SMTP TLS reports, sender-domain checks, email validation."""
