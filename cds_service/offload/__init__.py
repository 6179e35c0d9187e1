"""Reading large JSON in a separate process, so the event loop never parses it.

`pool`: the process (one per worker) and how work reaches it; `child`: how it starts;
`relevant`: cutting a Bundle down to the entries the rules read, which is what makes the
hand-off pay. What each large input is cut down to lives beside the code that reads it
(hook requests, `$apply` bodies, fetched search pages).
"""
