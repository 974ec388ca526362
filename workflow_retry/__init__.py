"""Retry failed Cognite Data Fusion workflow executions, safely and without a human.

The package is layered so that one execution ID can be followed from an entrypoint to the HTTP
request and back in a few files:

- ``payloads`` parses what a caller sent into one :class:`~workflow_retry.models.RetryRequest`;
- ``service`` orchestrates (bounded concurrency, deadline, one result per ID) and asks
  ``decisions`` (pure, no I/O) what to do with each execution;
- ``cdf`` is the only module that talks to CDF, through cognite-sdk;
- ``function`` is the Cognite Function entrypoint. The Lambda entrypoint lives in ``aws`` and is
  imported only on that path.
"""

__version__ = "0.1.0"
