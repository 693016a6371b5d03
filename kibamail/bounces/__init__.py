"""What the internet sends back: bounces, complaints, auto-replies, delivery notices.

One package, no I/O, used by every path that meets a non-2xx outcome: the MTA's
synchronous replies (``mta.delivery``), the inbound port-25 handler (``mta.inbound``) and
``kibamail bounces parse``. Layout:

- ``model``: the kinds, reasons and actions every path reports (the contract);
- ``taxonomy.toml`` + ``taxonomy``: each reason's action and the ordered rules that map an
  SMTP reply (code, enhanced status, provider text) to a reason, validated at load;
- ``classifier``: the one classifier over those rules;
- ``parse``: one entry point from raw bytes to findings; ``rfc3464``, ``arf``,
  ``autoreply`` and ``formats/`` (non-standard MTA and provider formats) feed it.
"""
