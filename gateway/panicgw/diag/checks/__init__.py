"""One module per subject a technician checks; each check takes the shared
:class:`~panicgw.diag.context.Context` and returns its result lines (``panicgw.diag.run``
orders and runs them)."""
