import gc

from journal.app import create_app

app = create_app()

# Everything loaded so far (routes, templates, models, catalogs) lives as long as the worker:
# taking it out of the collector's generations makes each full collection scan only what
# requests made, instead of pausing a request for the whole app (Python's gc.freeze docs).
gc.collect()
gc.freeze()
